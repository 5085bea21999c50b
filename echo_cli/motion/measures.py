"""Scalar face measures on landmarks (pixels or canonical units), shared by motion and eval.

All measures are scale-free: distances are divided by the inter-ocular distance (outer eye
corners, the 300-W convention), so they compare across image sizes and identities.
"""
from __future__ import annotations

import numpy as np

from echo_cli.motion import regions as R


def _as3(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    return lm[None] if lm.ndim == 2 else lm          # (T, 478, C)


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """(T,) distance between the outer eye corners, in the landmarks' units (x, y only)."""
    lm = _as3(landmarks)
    a, b = R.EYE_OUTER_CORNERS
    return np.linalg.norm(lm[:, a, :2] - lm[:, b, :2], axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,) mean inner-lip gap over 5 facing point pairs / inter-ocular distance (0 = closed)."""
    lm = _as3(landmarks)
    up = np.array([p[0] for p in R.LIP_GAP_PAIRS]); lo = np.array([p[1] for p in R.LIP_GAP_PAIRS])
    gap = np.linalg.norm(lm[:, up, :2] - lm[:, lo, :2], axis=-1).mean(-1)
    return gap / np.maximum(inter_ocular(lm), 1e-9)


def smile_width(landmarks: np.ndarray) -> np.ndarray:
    """(T,) lip-corner distance / inter-ocular distance (grows when smiling)."""
    lm = _as3(landmarks)
    a, b = R.LIP_CORNERS
    return np.linalg.norm(lm[:, a, :2] - lm[:, b, :2], axis=-1) / np.maximum(inter_ocular(lm), 1e-9)


def eye_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,) mean lid gap of both eyes / inter-ocular distance (near 0 during a blink)."""
    lm = _as3(landmarks)
    pairs = R.RIGHT_LID_PAIRS + R.LEFT_LID_PAIRS
    up = np.array([p[0] for p in pairs]); lo = np.array([p[1] for p in pairs])
    gap = np.linalg.norm(lm[:, up, :2] - lm[:, lo, :2], axis=-1).mean(-1)
    return gap / np.maximum(inter_ocular(lm), 1e-9)


def landmark_error(pred: np.ndarray, ref: np.ndarray, idx=None) -> np.ndarray:
    """(T,) mean 2-D point distance between two landmark sets / the reference's inter-ocular distance."""
    p, r = _as3(pred), _as3(ref)
    if idx is not None:
        sel = np.asarray(idx)
        d = np.linalg.norm(p[:, sel, :2] - r[:, sel, :2], axis=-1).mean(-1)
    else:
        d = np.linalg.norm(p[:, :, :2] - r[:, :, :2], axis=-1).mean(-1)
    return d / np.maximum(inter_ocular(r), 1e-9)
