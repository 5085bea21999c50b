"""Pure evaluation metrics on arrays (no media, no models): each documented with its source.

Conventions:
- Series are 1-D float arrays at one frame rate; landmark arrays are (T, N, 2|3) pixels.
- A metric that cannot be computed on its input (too short, constant, no frames of a
  class) returns NaN rather than raising, so one bad item never hides the others in a
  table; report.py writes NaN as JSON null.
- Landmark indices are MediaPipe face mesh (478 points with refined iris).

Which numbers are comparable to the paper and which are our analogues is written in
docs/evaluation.md; the short version is on each function.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# ---------------------------------------------------------------------------------------
# MediaPipe landmark sets
# ---------------------------------------------------------------------------------------

LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263      # inter-ocular distance (outer eye corners)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14      # inner-lip gap = mouth opening
MOUTH_LEFT, MOUTH_RIGHT = 61, 291              # mouth corners (width, smile)

# The lip contour (outer + inner), as in MediaPipe's FACEMESH_LIPS.
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269,
        270, 409, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13,
        312, 311, 310, 415)

# Points that move little with expression (eye corners, nose bridge and tip, forehead,
# temples): used to align faces by a similarity transform before comparing lips, so a head
# turn or a zoom is not counted as a lip error.
RIGID = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 10, 151, 9, 8, 234, 454, 127, 356)

# Identity shape: face oval, nose, eye corners, brow roots; excludes lips and eyelids so
# the reference's expression matters less than who it is.
IDENTITY = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
            400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
            103, 67, 109, 1, 4, 5, 195, 197, 6, 168, 98, 327, 33, 133, 362, 263, 70, 300)


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _nan() -> float:
    return float("nan")


# ---------------------------------------------------------------------------------------
# Correlation and lag
# ---------------------------------------------------------------------------------------

def pearson(a, b) -> float:
    """Pearson correlation of two equal-length series; NaN if either is constant or < 3 long."""
    a, b = _f(a), _f(b)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3:
        return _nan()
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den < 1e-12:
        return _nan()
    return float((a * b).sum() / den)


def lagged_correlations(a, b, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """corr(a[t], b[t - L]) for L in [-max_lag, max_lag]: positive L means `a` is late.

    Returns (lags, correlations). Only the overlapping part is used for each lag.
    """
    a, b = _f(a), _f(b)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    lags = np.arange(-max_lag, max_lag + 1)
    out = np.full(len(lags), np.nan)
    for i, lag in enumerate(lags):
        if lag >= 0:
            out[i] = pearson(a[lag:], b[: n - lag])
        else:
            out[i] = pearson(a[: n + lag], b[-lag:])
    return lags, out


def best_lag_correlation(a, b, max_lag: int = 10) -> tuple[float, int]:
    """The highest corr(a[t], b[t - L]) over |L| <= max_lag, and that L (frames; a late if L > 0).

    Source: the standard audio-visual offset estimate (SyncNet's offset search, Chung &
    Zisserman 2016, applied to a 1-D mouth-opening series instead of embeddings).
    """
    lags, r = lagged_correlations(a, b, max_lag)
    if not np.isfinite(r).any():
        return _nan(), 0
    i = int(np.nanargmax(r))
    return float(r[i]), int(lags[i])


def shift_z_score(a, b, max_lag: int = 5, min_shift: int | None = None) -> float:
    """How far the best-lag correlation stands above circularly shifted (chance) pairings.

    z = (best |L|<=max_lag correlation - mean over shifts) / std over shifts, where the
    shifts are circular shifts of `b` by at least `min_shift` frames (default 2 s at 25 fps
    or a quarter of the series). This is the check used to qualify ../shared/data/talking.
    """
    a, b = _f(a), _f(b)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if n < 20:
        return _nan()
    r0, _ = best_lag_correlation(a, b, max_lag)
    if not np.isfinite(r0):
        return _nan()
    min_shift = min_shift if min_shift is not None else min(50, n // 4)
    shifts = [s for s in range(min_shift, n - min_shift)]
    if len(shifts) < 5:
        return _nan()
    if len(shifts) > 200:                       # enough for a stable null distribution
        shifts = list(np.linspace(min_shift, n - min_shift - 1, 200).astype(int))
    null = np.array([pearson(a, np.roll(b, s)) for s in shifts])
    null = null[np.isfinite(null)]
    if len(null) < 5 or null.std() < 1e-9:
        return _nan()
    return float((r0 - null.mean()) / null.std())


# ---------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------

def interocular(landmarks) -> np.ndarray:
    """(T,) distance between the outer eye corners (33, 263) in the image plane."""
    L = _f(landmarks)
    return np.linalg.norm(L[:, LEFT_EYE_OUTER, :2] - L[:, RIGHT_EYE_OUTER, :2], axis=-1)


def mouth_opening(landmarks) -> np.ndarray:
    """(T,) inner-lip gap (13-14) / inter-ocular distance (33-263): scale-free mouth opening."""
    L = _f(landmarks)
    gap = np.linalg.norm(L[:, UPPER_INNER_LIP, :2] - L[:, LOWER_INNER_LIP, :2], axis=-1)
    return gap / np.maximum(interocular(L), 1e-6)


def similarity_align(src, dst) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares similarity transform (Umeyama 1991) taking 2-D points src -> dst.

    Returns (R (2, 2), s, t (2,)) such that s * src @ R.T + t ~ dst; no reflection.
    """
    src, dst = _f(src)[:, :2], _f(dst)[:, :2]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / len(src)
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    D = np.diag([1.0, d])
    R = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / max(var_s, 1e-12))
    t = mu_d - s * R @ mu_s
    return R, s, t


def align_to(landmarks, ref, anchors: Sequence[int] = RIGID) -> np.ndarray:
    """Map each frame of `landmarks` (T, N, 2|3) onto `ref` (T, N, 2|3) or (N, 2|3) in 2-D,
    by the similarity transform fitted on the anchor points; returns (T, N, 2)."""
    L = _f(landmarks)[..., :2]
    R_ = _f(ref)[..., :2]
    if R_.ndim == 2:
        R_ = np.broadcast_to(R_, L.shape)
    idx = list(anchors)
    out = np.empty_like(L)
    for t in range(len(L)):
        R, s, tr = similarity_align(L[t, idx], R_[t, idx])
        out[t] = s * L[t] @ R.T + tr
    return out


# ---------------------------------------------------------------------------------------
# Lip sync
# ---------------------------------------------------------------------------------------

def lip_vertex_error(pred, ref, anchors: Sequence[int] = RIGID, lips: Sequence[int] = LIPS) -> float:
    """LVE-style lip error: per frame the maximum lip-point distance after similarity
    alignment of `pred` onto `ref` (on the rigid anchors), over the reference's
    inter-ocular distance, averaged over frames. 0 = identical lips.

    Source: LVE of MeshTalk / FaceFormer (max L2 over lip vertices, mean over frames);
    ours works on 2-D MediaPipe landmarks normalised by inter-ocular distance, so values
    are not comparable to the 3-D-mesh millimetres of those papers.
    """
    P, Q = _f(pred), _f(ref)
    n = min(len(P), len(Q))
    if n == 0:
        return _nan()
    P, Q = P[:n], Q[:n]
    A = align_to(P, Q, anchors)
    err = np.linalg.norm(A[:, list(lips)] - Q[:, list(lips), :2], axis=-1).max(axis=1)
    return float(np.mean(err / np.maximum(interocular(Q), 1e-6)))


# ---------------------------------------------------------------------------------------
# Behaviour (dyadic listener literature: DIM, Zhou et al. 2022; ECHO Table 1)
# ---------------------------------------------------------------------------------------

def mean_pcc(x, y) -> float:
    """Mean over feature columns of the Pearson correlation between x[:, k] and y[:, k]
    (columns that are constant in either are skipped). x, y: (T, K)."""
    X, Y = _f(x), _f(y)
    if X.ndim == 1:
        X, Y = X[:, None], Y[:, None]
    n = min(len(X), len(Y))
    rs = [pearson(X[:n, k], Y[:n, k]) for k in range(min(X.shape[1], Y.shape[1]))]
    rs = [r for r in rs if np.isfinite(r)]
    return float(np.mean(rs)) if rs else _nan()


def rpcc(generated, partner, real=None) -> dict:
    """rPCC: |PCC(real listener, partner) - PCC(generated listener, partner)| on motion
    coefficients (DIM's evaluation; ECHO Table 1, lower is better). Without a real
    listener only `pcc` (generated vs partner) is returned and `rpcc` is NaN.

    Our coefficients are the compact per-frame behaviour features of eval.measure (head
    pose + expression measures from landmarks), not 3DMM coefficients: an analogue.
    """
    pcc_gen = mean_pcc(generated, partner)
    if real is None:
        return {"pcc": pcc_gen, "pcc_real": _nan(), "rpcc": _nan()}
    pcc_real = mean_pcc(real, partner)
    return {"pcc": pcc_gen, "pcc_real": pcc_real, "rpcc": float(abs(pcc_real - pcc_gen))}


def kmeans_labels(x, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Plain k-means (k-means++ init, Lloyd iterations) on standardised rows; (T,) labels."""
    X = _f(x)
    if X.ndim == 1:
        X = X[:, None]
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(X)))
    centres = [X[rng.integers(len(X))]]
    for _ in range(1, k):
        d2 = np.min(((X[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        if d2.sum() <= 1e-12:
            break
        centres.append(X[rng.choice(len(X), p=d2 / d2.sum())])
    C = np.array(centres)
    labels = np.zeros(len(X), dtype=int)
    for _ in range(iters):
        d2 = ((X[:, None] - C[None]) ** 2).sum(-1)
        new = d2.argmin(1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(len(C)):
            if (labels == j).any():
                C[j] = X[labels == j].mean(0)
    return labels


def sid(features, k: int = 40, seed: int = 0, reference=None) -> float:
    """SID (diversity): entropy, in bits, of the histogram of k-means cluster labels of the
    per-frame features (DIM; ECHO Table 1, higher is better; k = 40 for expression and 20
    for pose in DIM). With `reference` (e.g. the real clips' features) the clusters are fitted
    on reference + features together so two systems are measured on the same codebook;
    otherwise on `features` alone. A still face gives 0.
    """
    X = _f(features)
    if X.ndim == 1:
        X = X[:, None]
    if len(X) == 0:
        return _nan()
    pool = X if reference is None else np.concatenate([_f(reference).reshape(-1, X.shape[1]), X])
    mu, sd = pool.mean(0), pool.std(0)
    sd = np.where(sd < 1e-9, 1.0, sd)
    Z = (pool - mu) / sd
    labels = kmeans_labels(Z, k, seed)[-len(X):]
    counts = np.bincount(labels).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def motion_variance(features) -> float:
    """Var: mean over feature columns of the temporal variance (DIM; ECHO Table 1, higher
    means more motion; the real data's value is the target). Units follow the features."""
    X = _f(features)
    if X.ndim == 1:
        X = X[:, None]
    if len(X) < 2:
        return _nan()
    return float(X.var(axis=0).mean())


# ---------------------------------------------------------------------------------------
# Listening vs speaking, reactions
# ---------------------------------------------------------------------------------------

def mouth_ratio(mouth, speaking) -> float:
    """Mean mouth opening while listening / while speaking (speaking: (T,) bool). A speaker
    who closes the mouth when listening scores well below 1; a still face scores 1; NaN
    when either class has no frames."""
    m = _f(mouth)
    s = np.asarray(speaking, dtype=bool)[: len(m)]
    m = m[: len(s)]
    if s.sum() == 0 or (~s).sum() == 0:
        return _nan()
    sp = float(np.nanmean(m[s]))
    if sp <= 1e-9:
        return _nan()
    return float(np.nanmean(m[~s]) / sp)


def mouth_std_ratio(mouth, speaking, listening=None, margin: int = 0, before: int = 0) -> float:
    """Std of mouth opening while listening / std while speaking (issue 7: ≤ 0.35).
    listening: (T,) bool, default = not speaking. margin: frames dropped after every change
    of the speaking state (the mouth closing at the end of a turn belongs to neither state);
    before: frames dropped before every change as well (the lips part ahead of the voice:
    100-300 ms in natural audiovisual speech, Chandrasekaran et al. 2009).
    NaN when either class has fewer than 5 frames or the speaking std is 0."""
    m = _f(mouth)
    s = np.asarray(speaking, dtype=bool)[: len(m)]
    m = m[: len(s)]
    li = ~s if listening is None else (np.asarray(listening, dtype=bool)[: len(s)] & ~s)
    if margin > 0 or before > 0:
        keep = np.ones(len(s), bool)
        for c in np.flatnonzero(np.diff(s.astype(int)) != 0) + 1:
            keep[max(0, c - before):c + margin] = False
        s, li = s & keep, li & keep
    ok = np.isfinite(m)
    s, li = s & ok, li & ok
    if s.sum() < 5 or li.sum() < 5:
        return _nan()
    sd = float(np.std(m[s]))
    return float(np.std(m[li]) / sd) if sd > 1e-12 else _nan()


def reaction_delay(activity, events, fps: float, window_s: float = 2.0, baseline_s: float = 1.0,
                   k_sigma: float = 3.0, sustain: int = 3) -> float:
    """Median seconds from each event (frame indices, e.g. user turn starts or smiles) until
    the avatar's activity (e.g. per-frame motion speed) rises above its pre-event baseline
    mean + k_sigma * std for `sustain` consecutive frames (so one noisy frame is not a
    reaction); events with no reaction inside `window_s` are skipped. NaN if none
    react. An analogue of the reaction timing studied in listener-generation work."""
    a = _f(activity)
    nb, nw = max(2, int(round(baseline_s * fps))), max(1, int(round(window_s * fps)))
    delays = []
    for e in events:
        e = int(e)
        if e - nb < 0 or e >= len(a):
            continue
        base = a[e - nb:e]
        thr = base.mean() + k_sigma * max(base.std(), 1e-6)
        after = a[e:e + nw]
        above = (after > thr).astype(int)
        run = np.convolve(above, np.ones(sustain, dtype=int), "valid") if len(above) >= sustain else []
        hit = np.flatnonzero(np.asarray(run) >= sustain)
        if len(hit):
            delays.append(hit[0] / fps)
    return float(np.median(delays)) if delays else _nan()


# ---------------------------------------------------------------------------------------
# Temporal quality
# ---------------------------------------------------------------------------------------

def jitter_series(landmarks, idx: Sequence[int] | None = None) -> np.ndarray:
    """(T-2,) mean norm of the second difference (acceleration) of the landmarks, over the
    inter-ocular distance: frame-to-frame shake that smooth motion does not have."""
    L = _f(landmarks)[..., :2]
    if idx is not None:
        iod = interocular(L)
        L = L[:, list(idx)]
    else:
        iod = interocular(L)
    if len(L) < 3:
        return np.zeros(0)
    acc = L[2:] - 2 * L[1:-1] + L[:-2]
    return np.linalg.norm(acc, axis=-1).mean(-1) / np.maximum(iod[1:-1], 1e-6)


def jitter(landmarks, idx: Sequence[int] | None = None) -> float:
    """Mean acceleration magnitude per frame / inter-ocular distance (lower = steadier)."""
    j = jitter_series(landmarks, idx)
    return float(j.mean()) if len(j) else _nan()


def boundary_jitter(landmarks, boundaries: Sequence[int], radius: int = 1) -> dict:
    """Jitter at chunk seams vs inside chunks. `boundaries` are the first frame index of each
    chunk after the first; frames within `radius` of a seam count as 'at'. The ratio
    at / inside is about 1 for seamless stitching and grows with visible seams."""
    j = jitter_series(landmarks)
    if len(j) == 0:
        return {"at": _nan(), "inside": _nan(), "ratio": _nan()}
    near = np.zeros(len(j), dtype=bool)
    for b in boundaries:
        # jitter_series[i] is centred on frame i + 1; a jump between frames b-1 and b shows
        # in the accelerations centred on b-1 and b (radius 1), i.e. indices b-2 and b-1.
        lo, hi = max(0, b - radius - 1), min(len(j), b + radius - 1)
        near[lo:hi] = True
    if not near.any() or near.all():
        return {"at": _nan(), "inside": float(j.mean()), "ratio": _nan()}
    at, inside = float(j[near].mean()), float(j[~near].mean())
    return {"at": at, "inside": inside, "ratio": at / inside if inside > 1e-12 else _nan()}


def frozen_fraction(frame_diffs, threshold: float = 0.05) -> float:
    """Fraction of consecutive frame pairs whose mean absolute pixel difference (0-255 scale)
    is below `threshold`: a still image or a stalled decoder scores about 1; real video
    about 0 (on 128 px gray thumbnails, camera noise and motion stay above 0.05 in ~99% of
    the held-out talking clips' frame pairs; duplicated frames of a frame-rate conversion
    fall below it and count, rightly, as frozen)."""
    d = _f(frame_diffs)
    if len(d) == 0:
        return _nan()
    return float((d < threshold).mean())


def face_lost_fraction(detected) -> float:
    """Fraction of frames where the face detector found no face."""
    d = np.asarray(detected, dtype=bool)
    return float(1.0 - d.mean()) if len(d) else _nan()


# ---------------------------------------------------------------------------------------
# Identity and image
# ---------------------------------------------------------------------------------------

def shape_consistency(landmarks, ref_landmarks, idx: Sequence[int] = IDENTITY) -> float:
    """Identity-shape drift: median over frames of the RMS distance between the identity
    points of each frame and of the reference (one frame (N, 2|3)), after similarity
    alignment on those same points, over the reference's inter-ocular distance.
    0 = same face shape. An analogue of CSIM (which needs a face-recognition network we do
    not have): it catches a face that morphs into another shape, not a change of texture."""
    L = _f(landmarks)
    R = _f(ref_landmarks)
    if R.ndim == 3:
        R = R[0]
    if len(L) == 0:
        return _nan()
    A = align_to(L, R, idx)
    iod = float(np.linalg.norm(R[LEFT_EYE_OUTER, :2] - R[RIGHT_EYE_OUTER, :2]))
    d = np.sqrt(((A[:, list(idx)] - R[list(idx), :2]) ** 2).sum(-1).mean(-1))
    return float(np.median(d) / max(iod, 1e-6))


def ssim_psnr(frames_a, frames_b) -> dict:
    """Mean SSIM and PSNR (dB) between two equal-size frame sequences (uint8, gray or RGB),
    as used for self-reenactment; identical frames give SSIM 1 and PSNR inf (written as
    100 dB so JSON stays finite). scikit-image implementations."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    n = min(len(frames_a), len(frames_b))
    if n == 0:
        return {"ssim": _nan(), "psnr": _nan()}
    ss, ps = [], []
    for a, b in zip(frames_a[:n], frames_b[:n]):
        a, b = np.asarray(a), np.asarray(b)
        ch = -1 if a.ndim == 3 else None
        ss.append(structural_similarity(a, b, channel_axis=ch, data_range=255))
        mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
        ps.append(100.0 if mse == 0 else min(100.0, peak_signal_noise_ratio(a, b, data_range=255)))
    return {"ssim": float(np.mean(ss)), "psnr": float(np.mean(ps))}


__all__ = [
    "pearson", "lagged_correlations", "best_lag_correlation", "shift_z_score",
    "interocular", "mouth_opening", "similarity_align", "align_to", "lip_vertex_error",
    "mean_pcc", "rpcc", "kmeans_labels", "sid", "motion_variance", "mouth_ratio",
    "reaction_delay", "jitter_series", "jitter", "boundary_jitter", "frozen_fraction",
    "face_lost_fraction", "shape_consistency", "ssim_psnr",
    "LIPS", "RIGID", "IDENTITY",
]
