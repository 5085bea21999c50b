"""MotionSpace: 478 face landmarks + head pose  <->  a compact per-frame motion vector.

Layout of one motion vector (D = 6 + n_mouth + n_smile + n_eyes + n_brows + n_gaze, in
this order; `regions` gives the slices):

    pose   (6)  yaw, pitch, roll (radians); tx, ty = position of the face origin relative to
                the frame centre, in face units (inter-ocular distances); log(scale / height)
    mouth       articulation only: jaw drop, lip opening, rounding/protrusion (PCA)
    smile       lip-corner spread and raise, cheeks (regression basis on corner features)
    eyes        eyelids and blinks (PCA)
    brows       brow raise/frown (PCA)
    gaze        irises (PCA of the iris points)

How a frame is encoded:
1. A weighted 3-D similarity fit (Umeyama) of the image landmarks to the space's own mean
   frontal template, using only the `rigid` points (nose bridge, upper forehead, temples),
   gives rotation R, scale s (pixels per inter-ocular distance) and translation t. The
   pose-free ("canonical") face is R^T (x - t) / s, in inter-ocular units. We fit our own
   pose rather than reading FaceTrack.pose/canonical so that encode and decode use one
   convention whatever the tracker does; FaceTrack.landmarks is the only input used.
2. Expression = canonical face - the person's neutral face. The neutral is given, or is
   estimated robustly from the clip: the per-point median over frames whose mouth is in its
   most-closed 30 % and whose eyes are open (a plain median would bake a half-open mouth
   into the identity of a talking clip).
3. Each region's displacement (its own disjoint vertex set, see regions.derive_area_sets)
   is projected on an orthonormal basis. The lower face (lips, jaw, chin, cheeks) is shared
   by `smile` and `mouth`: the smile basis spans the displacement patterns predicted by
   four lip-corner features (corner spread, mean corner raise relative to the upper-lip
   centre, asymmetric raise, lateral shift); it is projected out of the lower-face
   displacements before the mouth PCA, so mouth and smile are orthogonal subspaces and
   changing smile codes never changes the articulation codes (and vice versa).

Decoding reverses 3 (neutral + sum of region reconstructions; points in no region keep the
neutral position) and 1 (s R x + t). The encode -> decode round-trip error is measured by
`roundtrip_error` and reported in docs/motion.md.

Masks for the generator's SDCM: `lip_mask` is 1 on mouth components and 0 elsewhere;
`face_mask` is its complement (pose, smile, eyes, brows, gaze). They are soft weights by
type (float32) so later spaces may blend, but this space uses 0/1.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError, ModelError
from echo_cli.motion import measures, regions as R

logger = log.get("echo_cli.motion.space")

STATE_VERSION = 1
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / "motion_space.safetensors"
REGION_NAMES = ("pose", "mouth", "smile", "eyes", "brows", "gaze")


@dataclass(frozen=True)
class MotionSpaceConfig:
    n_mouth: int = 10       # articulation: jaw drop, opening, rounding, asymmetries
    n_smile: int = 4        # = number of lip-corner features (spread, raise, asym. raise, shift)
    n_eyes: int = 4         # both lids, blinks, squint
    n_brows: int = 3        # raise, frown, asymmetric raise
    n_gaze: int = 4         # iris x/y, both eyes
    version: int = STATE_VERSION
    fitted_on: list = field(default_factory=list)   # media names the bases were fitted on
    metrics: dict = field(default_factory=dict)     # round-trip errors measured at fit time

    @property
    def dims(self) -> dict[str, int]:
        return {"pose": 6, "mouth": self.n_mouth, "smile": self.n_smile, "eyes": self.n_eyes,
                "brows": self.n_brows, "gaze": self.n_gaze}


# ---------------------------------------------------------------- rigid geometry helpers
def similarity_fit(points: np.ndarray, template: np.ndarray, weights: np.ndarray):
    """Batched weighted Umeyama: points (T, N, 3) ~ s R template + t.

    Returns R (T, 3, 3) proper rotations, s (T,), t (T, 3).
    """
    x = np.asarray(points, np.float64)
    y = np.asarray(template, np.float64)
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_x = np.einsum("n,tnc->tc", w, x)                         # (T, 3)
    mu_y = w @ y                                                # (3,)
    xc = x - mu_x[:, None]
    yc = y - mu_y
    h = np.einsum("n,tni,nj->tij", w, xc, yc)                   # (T, 3, 3)
    u, sv, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))                          # (T,) reflection guard
    dm = np.ones((x.shape[0], 3)); dm[:, 2] = d
    rot = (u * dm[:, None, :]) @ vt
    var_y = float(w @ (yc ** 2).sum(1))
    s = (sv * dm).sum(1) / var_y
    t = mu_x - s[:, None] * np.einsum("tij,j->ti", rot, mu_y)
    return rot, s, t


def euler_from_matrix(rot: np.ndarray) -> np.ndarray:
    """(T, 3, 3) -> (T, 3) yaw (about y), pitch (about x), roll (about z): R = Ry Rx Rz.

    Closed form (scipy's Rotation "YXZ" gives the same angles; tests/test_warp_speed.py
    checks): importing scipy.spatial cost ~0.5 s of every warm render.
    With R = Ry(a) Rx(b) Rz(c): R[1,2] = -sin b, R[0,2] = sin a cos b, R[2,2] = cos a cos b,
    R[1,0] = cos b sin c, R[1,1] = cos b cos c. At gimbal lock (cos b = 0) roll is set to 0,
    as scipy does.
    """
    r = np.asarray(rot, np.float64).reshape(-1, 3, 3)
    sb = np.clip(-r[:, 1, 2], -1.0, 1.0)
    pitch = np.arcsin(sb)
    cb = np.hypot(r[:, 1, 0], r[:, 1, 1])                 # |cos b|, robust near the lock
    lock = cb < 1e-7
    yaw = np.where(lock, np.arctan2(-r[:, 2, 0], r[:, 0, 0]), np.arctan2(r[:, 0, 2], r[:, 2, 2]))
    roll = np.where(lock, 0.0, np.arctan2(r[:, 1, 0], r[:, 1, 1]))
    return np.stack([yaw, pitch, roll], 1)


def matrix_from_euler(euler: np.ndarray) -> np.ndarray:
    """(T, 3) yaw, pitch, roll -> (T, 3, 3) R = Ry(yaw) Rx(pitch) Rz(roll) (scipy "YXZ")."""
    e = np.asarray(euler, np.float64).reshape(-1, 3)
    ca, sa = np.cos(e[:, 0]), np.sin(e[:, 0])
    cb, sb = np.cos(e[:, 1]), np.sin(e[:, 1])
    cc, sc = np.cos(e[:, 2]), np.sin(e[:, 2])
    out = np.empty((len(e), 3, 3), np.float64)
    out[:, 0, 0] = ca * cc + sa * sb * sc; out[:, 0, 1] = sa * sb * cc - ca * sc; out[:, 0, 2] = sa * cb
    out[:, 1, 0] = cb * sc;                out[:, 1, 1] = cb * cc;                out[:, 1, 2] = -sb
    out[:, 2, 0] = ca * sb * sc - sa * cc; out[:, 2, 1] = sa * sc + ca * sb * cc; out[:, 2, 2] = ca * cb
    return out


def _orthonormal_rows(m: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(m.T)
    return q.T


def _pca_basis(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Uncentred PCA (zero code = neutral): rows of the returned (k, F) basis, + variances."""
    _, sv, vt = np.linalg.svd(d, full_matrices=False)
    var = sv ** 2 / max(len(d), 1)
    return vt[:k], var


def _smile_features(disp: np.ndarray) -> np.ndarray:
    """(T, 478, 3) canonical displacement -> (T, 4) lip-corner features (see module doc)."""
    rc, lc = R.LIP_CORNERS
    top = R.LIP_CENTRE_TOP
    spread = disp[:, lc, 0] - disp[:, rc, 0]
    raise_ = -(0.5 * (disp[:, lc, 1] + disp[:, rc, 1]) - disp[:, top, 1])
    asym = disp[:, rc, 1] - disp[:, lc, 1]
    shift = 0.5 * (disp[:, lc, 0] + disp[:, rc, 0]) - disp[:, top, 0]
    return np.stack([spread, raise_, asym, shift], 1)


def _articulation_features(disp: np.ndarray) -> np.ndarray:
    """(T, 478, 3) canonical displacement -> (T, 4): inner-lip gap, jaw drop, lip protrusion,
    outer mouth height. Used only to keep the smile basis clear of articulation."""
    up = [p[0] for p in R.LIP_GAP_PAIRS]; lo = [p[1] for p in R.LIP_GAP_PAIRS]
    gap = (disp[:, lo, 1] - disp[:, up, 1]).mean(1)
    jaw = disp[:, R.CHIN, 1]
    protrude = disp[:, [R.LIP_CENTRE_TOP, R.LIP_CENTRE_BOTTOM], 2].mean(1)
    height = disp[:, R.LIP_CENTRE_BOTTOM, 1] - disp[:, R.LIP_CENTRE_TOP, 1]
    return np.stack([gap, jaw, protrude, height], 1)


def _smile_basis(disp: np.ndarray, low: np.ndarray, lower_idx: np.ndarray, k: int) -> np.ndarray:
    """Orthonormal (k, F) smile basis over the lower-face points.

    1. Regress the lower-face displacement jointly on the 4 lip-corner features and 4
       articulation features; the corner-feature coefficient rows are what the face does
       when the corners move with the articulation held fixed.
    2. Remove from them the span of the articulation rows and of the gradients of the
       inner-lip gaps (each facing pair's vertical distance), so that decoding a smile code
       leaves the mouth opening unchanged and encoding a pure articulation gives smile ~0.
    3. Orthonormalise and order by variance over the data.
    """
    feats = np.concatenate([_smile_features(disp), _articulation_features(disp)], 1)
    coef, *_ = np.linalg.lstsq(feats - feats.mean(0), low - low.mean(0), rcond=None)   # (8, F)
    smile, art = coef[:4], coef[4:]
    pos = {int(v): i for i, v in enumerate(lower_idx)}
    grads = []
    for a, b in R.LIP_GAP_PAIRS:
        g = np.zeros(low.shape[1])
        g[pos[b] * 3 + 1] = 1.0; g[pos[a] * 3 + 1] = -1.0
        grads.append(g)
    q = _orthonormal_rows(np.concatenate([art, np.stack(grads)], 0))
    smile = smile - (smile @ q.T) @ q
    basis = _orthonormal_rows(smile)[:k]
    _, _, v = np.linalg.svd(low @ basis.T, full_matrices=False)
    return v @ basis


# ---------------------------------------------------------------- the space
class MotionSpace:
    """See the module docstring. Build with `fit`, `from_state_dict` or `load`."""

    def __init__(self, config: MotionSpaceConfig, template: np.ndarray, sets: dict[str, np.ndarray],
                 bases: dict[str, np.ndarray], scales: dict[str, np.ndarray] | None = None):
        self.config = config
        self.template = np.asarray(template, np.float32)            # (478, 3) IOD units
        self.sets = {k: np.asarray(v, np.int64) for k, v in sets.items()}
        self.bases = {k: np.asarray(v, np.float32) for k, v in bases.items()}
        # per-component std over the fitting data (documentation / normalisation for models)
        self.scales = {k: np.asarray(v, np.float32) for k, v in (scales or {}).items()}
        w = np.zeros(478, np.float64)
        w[self.sets["rigid"]] = 1.0
        self._rigid_w = w
        dims = config.dims
        self.region_names = REGION_NAMES
        self.regions: dict[str, slice] = {}
        o = 0
        for name in REGION_NAMES:
            self.regions[name] = slice(o, o + dims[name]); o += dims[name]
        self.dim = o
        self.lip_mask = np.zeros(self.dim, np.float32)
        self.lip_mask[self.regions["mouth"]] = 1.0
        self.face_mask = (1.0 - self.lip_mask).astype(np.float32)

    # ------------------------------------------------------------ rigid part
    def align(self, landmarks: np.ndarray):
        """Image landmarks (T, 478, 3) -> canonical (T, 478, 3), R (T,3,3), s (T,), t (T,3)."""
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim == 2:
            lm = lm[None]
        if lm.shape[1:] != (478, 3):
            raise InputError(f"landmarks must be (T, 478, 3), got {lm.shape}",
                             fix="track with refine_landmarks (478 points)")
        rot, s, t = similarity_fit(lm, self.template, self._rigid_w)
        canon = np.einsum("tji,tnj->tni", rot, lm - t[:, None]) / s[:, None, None]
        return canon, rot, s, t

    def estimate_neutral(self, canonical: np.ndarray) -> np.ndarray:
        """Robust neutral (478, 3): median of frames with the mouth closed-ish and eyes open."""
        c = np.asarray(canonical, np.float64)
        if len(c) == 1:
            return c[0].copy()
        mo = measures.mouth_opening(c)
        eo = measures.eye_opening(c)
        sel = (mo <= np.quantile(mo, 0.3)) & (eo >= np.quantile(eo, 0.3))
        if sel.sum() < 1:
            sel = mo <= np.quantile(mo, 0.3)
        return np.median(c[sel], axis=0)

    def _pose_vec(self, rot, s, t, width: int, height: int) -> np.ndarray:
        eul = euler_from_matrix(rot)
        tx = (t[:, 0] - width / 2.0) / s
        ty = (t[:, 1] - height / 2.0) / s
        ls = np.log(s / float(height))
        return np.concatenate([eul, tx[:, None], ty[:, None], ls[:, None]], 1)

    def _pose_from_vec(self, pose: np.ndarray, width: int, height: int):
        pose = np.asarray(pose, np.float64).reshape(-1, 6)
        rot = matrix_from_euler(pose[:, :3])
        s = np.exp(pose[:, 5]) * height
        t = np.zeros((len(pose), 3))
        t[:, 0] = pose[:, 3] * s + width / 2.0
        t[:, 1] = pose[:, 4] * s + height / 2.0
        return rot, s, t

    # ------------------------------------------------------------ expression part
    def _encode_expr(self, disp: np.ndarray) -> dict[str, np.ndarray]:
        T = len(disp)
        low = disp[:, self.sets["lower"]].reshape(T, -1)
        smile = low @ self.bases["smile"].T.astype(np.float64)
        resid = low - smile @ self.bases["smile"].astype(np.float64)
        return {
            "mouth": resid @ self.bases["mouth"].T.astype(np.float64),
            "smile": smile,
            "eyes": disp[:, self.sets["eyes"]].reshape(T, -1) @ self.bases["eyes"].T.astype(np.float64),
            "brows": disp[:, self.sets["brows"]].reshape(T, -1) @ self.bases["brows"].T.astype(np.float64),
            "gaze": disp[:, self.sets["irises"]].reshape(T, -1) @ self.bases["gaze"].T.astype(np.float64),
        }

    def _decode_expr(self, motion: np.ndarray) -> np.ndarray:
        m = np.asarray(motion, np.float64)
        T = len(m)
        disp = np.zeros((T, 478, 3))
        g = lambda name: m[:, self.regions[name]] @ self.bases[name].astype(np.float64)
        low = g("mouth") + g("smile")
        disp[:, self.sets["lower"]] = low.reshape(T, -1, 3)
        disp[:, self.sets["eyes"]] = g("eyes").reshape(T, -1, 3)
        disp[:, self.sets["brows"]] = g("brows").reshape(T, -1, 3)
        disp[:, self.sets["irises"]] = g("gaze").reshape(T, -1, 3)
        return disp

    # ------------------------------------------------------------ public API
    def encode_landmarks(self, landmarks: np.ndarray, width: int, height: int,
                         neutral: np.ndarray | None = None, valid: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Image landmarks (T, 478, 3) -> (motion (T, D) float32, neutral (478, 3) float32)."""
        canon, rot, s, t = self.align(landmarks)
        if neutral is None:
            ok = np.ones(len(canon), bool) if valid is None else np.asarray(valid, bool)
            neutral = self.estimate_neutral(canon[ok] if ok.any() else canon)
        neutral = np.asarray(neutral, np.float64)
        codes = self._encode_expr(canon - neutral[None])
        out = np.concatenate([self._pose_vec(rot, s, t, width, height)]
                             + [codes[n] for n in REGION_NAMES[1:]], 1)
        return out.astype(np.float32), neutral.astype(np.float32)

    def encode(self, track, neutral: np.ndarray | None = None) -> np.ndarray:
        """FaceTrack -> motion (T, D) float32 (neutral estimated from the track if not given)."""
        motion, _ = self.encode_landmarks(track.landmarks, track.width, track.height,
                                          neutral=neutral, valid=getattr(track, "valid", None))
        return motion

    def neutral_of(self, track) -> np.ndarray:
        """The neutral face (478, 3) canonical that `encode(track)` uses."""
        canon, *_ = self.align(track.landmarks)
        valid = np.asarray(getattr(track, "valid", np.ones(len(canon), bool)), bool)
        return self.estimate_neutral(canon[valid] if valid.any() else canon).astype(np.float32)

    def decode(self, motion: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """motion (T, D) + neutral (478, 3) -> canonical landmarks (T, 478, 3) float32 (pose-free)."""
        m = np.asarray(motion, np.float64).reshape(-1, self.dim)
        return (np.asarray(neutral, np.float64)[None] + self._decode_expr(m)).astype(np.float32)

    def pose_of(self, motion: np.ndarray, width: int, height: int):
        """The rigid transform of each frame: R (T,3,3), s (T,), t (T,3) in pixels of a WxH frame."""
        return self._pose_from_vec(np.asarray(motion).reshape(-1, self.dim)[:, :6], width, height)

    def to_image_landmarks(self, motion: np.ndarray, neutral: np.ndarray, width: int, height: int
                           ) -> np.ndarray:
        """motion (T, D) -> landmarks (T, 478, 3) in pixels of a width x height frame.

        The pose part is absolute in that frame; use motion.retarget to express a driving
        clip's motion in a reference image's frame first.
        """
        canon = self.decode(motion, neutral).astype(np.float64)
        rot, s, t = self.pose_of(motion, width, height)
        img = s[:, None, None] * np.einsum("tij,tnj->tni", rot, canon) + t[:, None]
        return img.astype(np.float32)

    def mouth_opening(self, landmarks: np.ndarray) -> np.ndarray:
        return measures.mouth_opening(landmarks)

    def roundtrip_error(self, landmarks: np.ndarray, width: int, height: int) -> dict[str, float]:
        """Encode -> decode -> image; mean point error / inter-ocular distance, overall and lips."""
        motion, neutral = self.encode_landmarks(landmarks, width, height)
        rec = self.to_image_landmarks(motion, neutral, width, height)
        lm = np.asarray(landmarks)
        lm = lm[None] if lm.ndim == 2 else lm
        return {"all": float(measures.landmark_error(rec, lm).mean()),
                "lips": float(measures.landmark_error(rec, lm, R.lips_all()).mean()),
                "eyes": float(measures.landmark_error(rec, lm, R.eyes_all()).mean()),
                "mouth_opening_corr": float(np.corrcoef(measures.mouth_opening(rec),
                                                        measures.mouth_opening(lm))[0, 1])
                if len(lm) > 2 else float("nan")}

    # ------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, tracks, config: MotionSpaceConfig | None = None, iters: int = 3) -> "MotionSpace":
        """Fit the template, area sets and bases on tracks (FaceTrack or (landmarks, W, H) tuples)."""
        cfg = config or MotionSpaceConfig()
        clips = []
        names = []
        for tr in tracks:
            if isinstance(tr, tuple):
                lm, src = tr[0], (tr[3] if len(tr) > 3 else "")
            else:
                lm = tr.landmarks[np.asarray(tr.valid, bool)] if len(tr.landmarks) else tr.landmarks
                src = tr.source
            lm = np.asarray(lm, np.float64)
            if len(lm) >= 2:
                clips.append(lm); names.append(Path(str(src)).name)
        if not clips:
            raise InputError("no face tracks to fit the motion space on",
                             fix="pass tracks with at least two valid frames")
        # 1. template: frontal-ish mean shape by iterated Procrustes on the nose/eye points,
        #    then the rigid set is derived from it and the fit repeated on the rigid points.
        init_w = np.zeros(478); init_w[list(R.NOSE_BRIDGE) + list(R.EYE_OUTER_CORNERS)
                                       + list(R.EYE_INNER_CORNERS) + [10, 151, 9]] = 1.0
        template = clips[0][0] - clips[0][0].mean(0)
        w = init_w
        for it in range(iters + 1):
            acc = np.zeros((478, 3)); n = 0
            for lm in clips:
                rot, s, t = similarity_fit(lm, template, w)
                canon = np.einsum("tji,tnj->tni", rot, lm - t[:, None]) / s[:, None, None]
                acc += canon.sum(0); n += len(canon)
            mean = acc / n
            iod = np.linalg.norm(mean[R.EYE_OUTER_CORNERS[0], :2] - mean[R.EYE_OUTER_CORNERS[1], :2])
            template = (mean - mean[list(R.NOSE_BRIDGE)].mean(0)) / iod
            sets = {k: np.array(v) for k, v in R.derive_area_sets(template).items()}
            w = np.zeros(478); w[sets["rigid"]] = 1.0
        space = cls(cfg, template, sets, bases={k: np.zeros((cfg.dims[k], 1)) for k in REGION_NAMES[1:]})
        # 2. displacements from each clip's robust neutral
        disps = []
        for lm in clips:
            canon, *_ = space.align(lm)
            disps.append(canon - space.estimate_neutral(canon)[None])
        disp = np.concatenate(disps, 0)                                   # (N, 478, 3)
        N = len(disp)
        # 3. smile basis from lip-corner features, kept clear of articulation, then
        #    projected out of the lower face before the mouth PCA (see _smile_basis)
        low = disp[:, sets["lower"]].reshape(N, -1)
        smile_b = _smile_basis(disp, low, sets["lower"], cfg.n_smile)
        resid = low - (low @ smile_b.T) @ smile_b
        bases = {"smile": smile_b,
                 "mouth": _pca_basis(resid, cfg.n_mouth)[0],
                 "eyes": _pca_basis(disp[:, sets["eyes"]].reshape(N, -1), cfg.n_eyes)[0],
                 "brows": _pca_basis(disp[:, sets["brows"]].reshape(N, -1), cfg.n_brows)[0],
                 "gaze": _pca_basis(disp[:, sets["irises"]].reshape(N, -1), cfg.n_gaze)[0]}
        # sign convention: make each component's largest loading positive (stable across refits)
        for k, b in bases.items():
            sgn = np.sign(b[np.arange(len(b)), np.abs(b).argmax(1)])
            bases[k] = b * sgn[:, None]
        cfg2 = MotionSpaceConfig(**{**asdict(cfg), "fitted_on": names})
        space = cls(cfg2, template, sets, bases)
        codes = np.concatenate([space.encode_landmarks(lm, 512, 512)[0] for lm in clips], 0)
        space.scales = {"std": codes.std(0).astype(np.float32)}
        logger.info("motion space fitted on %d clips, %d frames, D=%d", len(clips), N, space.dim)
        return space

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(tensors, JSON-able config) for safetensors + a JSON side file."""
        tensors = {"template": self.template.astype(np.float32)}
        tensors.update({f"set.{k}": v.astype(np.int64) for k, v in self.sets.items()})
        tensors.update({f"basis.{k}": v.astype(np.float32) for k, v in self.bases.items()})
        tensors.update({f"scale.{k}": v.astype(np.float32) for k, v in self.scales.items()})
        conf = {"kind": "echo-cli motion space", **asdict(self.config),
                "regions": {k: [s.start, s.stop] for k, s in self.regions.items()}, "dim": self.dim}
        return tensors, conf

    @classmethod
    def from_state_dict(cls, tensors: dict[str, np.ndarray], config: dict) -> "MotionSpace":
        if int(config.get("version", -1)) != STATE_VERSION:
            raise ModelError(f"motion space version {config.get('version')} != {STATE_VERSION}",
                             fix="refit with `python -m echo_cli.motion.fit`")
        keys = {f.name for f in MotionSpaceConfig.__dataclass_fields__.values()}
        cfg = MotionSpaceConfig(**{k: v for k, v in config.items() if k in keys})
        grab = lambda p: {k[len(p):]: np.asarray(v) for k, v in tensors.items() if k.startswith(p)}
        try:
            space = cls(cfg, tensors["template"], grab("set."), grab("basis."), grab("scale."))
        except KeyError as e:
            raise ModelError(f"motion space tensors incomplete: missing {e}",
                             fix="refit with `python -m echo_cli.motion.fit`") from e
        for name in REGION_NAMES[1:]:
            if space.bases[name].shape[0] != cfg.dims[name]:
                raise ModelError(f"motion space basis '{name}' has {space.bases[name].shape[0]} rows, "
                                 f"config says {cfg.dims[name]}", fix="refit the motion space")
        return space

    def save(self, path: str | Path) -> None:
        """safetensors + a .json config beside it (both written atomically)."""
        from safetensors.numpy import save_file
        from echo_cli.io_atomic import atomic_path, write_text
        path = Path(path)
        tensors, conf = self.state_dict()
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                      metadata={"config": json.dumps(conf)})
        write_text(path.with_suffix(".json"), json.dumps(conf, indent=2) + "\n")
        for p in (path, path.with_suffix(".json")):     # temp files are 0600; ship them readable
            os.chmod(p, 0o644)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MotionSpace":
        """Load a saved space (default: the one shipped in echo_cli/checkpoints)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        path = Path(path) if path is not None else DEFAULT_PATH
        if not path.is_file():
            raise ModelError("motion space file not found", path=path,
                             fix="refit with `python -m echo_cli.motion.fit`")
        try:
            tensors = load_file(str(path))
            from safetensors import safe_open
            with safe_open(str(path), "np") as f:
                conf = json.loads((f.metadata() or {}).get("config", "{}"))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(f"motion space file unreadable: {e}", path=path,
                             fix="refit with `python -m echo_cli.motion.fit`") from e
        return cls.from_state_dict(tensors, conf)


_DEFAULT: MotionSpace | None = None


def default_space() -> MotionSpace:
    """The shipped motion space, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MotionSpace.load()
    return _DEFAULT
