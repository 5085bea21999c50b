"""Retargeting: one face's motion applied to another face without changing its identity.

Motion codes are displacements from a person's own neutral face, and the pose is a rigid
transform; so a driving clip moves a reference face when
  - the expression codes are taken relative to an anchor frame of the driving clip
    (default: its first frame, the LivePortrait "relative motion" convention) and added to
    the reference's own codes (0 when the reference image is its own neutral), and decoded
    on the reference's neutral face: the reference keeps its face shape (identity) and only
    the *changes* of the driver's face are applied;
  - the head pose is relative too: rotation R_drv(t) R_anchor^T R_ref (the driver's turn
    since the anchor, applied in the camera frame to the reference's pose), scale s_ref * s_drv(t) / s_anchor, and the
    translation moves by the driver's displacement scaled by s_ref / s_anchor.
Self-reenactment (reference = the driving clip's first frame, anchor = 0) reproduces the
driving landmarks up to the motion space's round-trip error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echo_cli.motion.space import MotionSpace


@dataclass
class Reference:
    """A reference face: its neutral (canonical, (478, 3)) and its motion vector (D,) in its image."""
    neutral: np.ndarray
    motion: np.ndarray
    width: int
    height: int

    @classmethod
    def from_landmarks(cls, space: MotionSpace, landmarks: np.ndarray, width: int, height: int) -> "Reference":
        """The reference image is its own neutral: expression codes 0, pose = its pose."""
        lm = np.asarray(landmarks, np.float32).reshape(1, 478, 3)
        canon, *_ = space.align(lm)
        motion, neutral = space.encode_landmarks(lm, width, height, neutral=canon[0])
        return cls(neutral=neutral, motion=motion[0], width=int(width), height=int(height))


def retarget(space: MotionSpace, driving: np.ndarray, driving_size: tuple[int, int], ref: Reference,
             anchor: np.ndarray | int = 0, expression_scale: float = 1.0, pose: bool = True) -> np.ndarray:
    """driving (T, D) motion encoded in its own WxH frame -> (T, D) motion in the reference's frame.

    anchor: a frame index of `driving` or a (D,) motion that corresponds to the reference's
    look (its expression and pose). expression_scale scales the relative expression
    (1 = as driven). pose=False keeps the reference's head still (expressions only).
    """
    d = np.asarray(driving, np.float64).reshape(-1, space.dim)
    a = d[int(anchor)] if np.ndim(anchor) == 0 else np.asarray(anchor, np.float64).reshape(space.dim)
    out = np.empty_like(d)
    ps = space.regions["pose"]
    # expression: relative to the anchor, on top of the reference's own codes
    out[:, ps.stop:] = ref.motion[ps.stop:] + expression_scale * (d[:, ps.stop:] - a[ps.stop:])
    if not pose:
        out[:, ps] = ref.motion[ps]
        return out.astype(np.float32)
    dw, dh = driving_size
    r_d, s_d, t_d = space.pose_of(d, dw, dh)
    r_a, s_a, t_a = space.pose_of(a[None], dw, dh)
    r_r, s_r, t_r = space.pose_of(ref.motion[None], ref.width, ref.height)
    rot = r_d @ r_a[0].T @ r_r[0]                                   # (T, 3, 3)
    s = s_r[0] * s_d / s_a[0]
    t = t_r[0][None, :2] + (t_d[:, :2] - t_a[0][None, :2]) * (s_r[0] / s_a[0])
    from echo_cli.motion.space import euler_from_matrix
    out[:, 0:3] = euler_from_matrix(rot)
    out[:, 3] = (t[:, 0] - ref.width / 2.0) / s
    out[:, 4] = (t[:, 1] - ref.height / 2.0) / s
    out[:, 5] = np.log(s / float(ref.height))
    return out.astype(np.float32)


def to_reference_landmarks(space: MotionSpace, motion: np.ndarray, ref: Reference) -> np.ndarray:
    """Retargeted motion (T, D) -> (T, 478, 3) landmarks in the reference image's pixels."""
    return space.to_image_landmarks(motion, ref.neutral, ref.width, ref.height)
