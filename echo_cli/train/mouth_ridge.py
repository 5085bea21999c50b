"""Closed-form ridge mouth prior: audio features (+-k frames) -> normalised mouth codes.

Why not a learned head: with ~5 min of real audio-visual speech the trained mouth head
over-fits (held-out correlation 0.35 at step 500, 0.29 at step 1500 while its training
loss keeps falling). A linear map over a few frames of PCA-reduced Whisper features, with
its ridge penalty chosen by leave-one-speaker-out cross-validation on the *training*
speakers (held-out speakers are never looked at), is the best-regularised estimate the
data supports; it is fitted once, before the flow trains, and frozen.

The model-side map (model/audio_encoder.py, `mouth_prior_kind="ridge"`) is
    prior(t) = sum_j  W_j^T P^T x(t + j - k) + b,    x = (feats - feat_mean) / feat_std
with P (Fa, rank) the training features' top principal directions, W (rank, 2k+1, n_mouth).

`fit` also returns each training clip's leave-its-speaker-out prediction: stage 1 feeds
those to the flow instead of the in-sample ones, so the flow learns how far to trust a
prior of held-out quality rather than an over-optimistic in-sample one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LAMBDAS = (3e4, 1e5, 3e5)    # a wider grid (1e4 .. 1e6) on the default data: CV peaks at 1e5 (docs/generator.md)


@dataclass
class RidgePrior:
    proj: np.ndarray                  # (Fa, rank) PCA directions of the normalised features
    weight: np.ndarray                # (n_mouth, rank, 2k+1) as a Conv1d weight
    bias: np.ndarray                  # (n_mouth,)
    lam: float
    cv: dict = field(default_factory=dict)        # lambda -> LOSO score
    loso: dict = field(default_factory=dict)      # clip name -> (T, n_mouth) out-of-speaker prediction


def windows(x: np.ndarray, k: int) -> np.ndarray:
    """(T, F) -> (T, (2k+1)F): frames t-k..t+k side by side, zero (= the feature mean) outside."""
    T = len(x)
    p = np.pad(x, ((k, k), (0, 0)))
    return np.concatenate([p[i:i + T] for i in range(2 * k + 1)], 1)


def _corr_score(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over mouth components of the Pearson correlation (used when no scorer is given)."""
    pc, tc = pred - pred.mean(0), target - target.mean(0)
    den = np.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0)) + 1e-9
    return float(((pc * tc).sum(0) / den).mean())


def fit(feats: list[np.ndarray], targets: list[np.ndarray], groups: list[str], names: list[str],
        rank: int = 64, context: int = 2, lambdas=LAMBDAS, score=None) -> RidgePrior:
    """feats: per clip (T, Fa) *normalised* features; targets: (T, n_mouth) normalised mouth codes;
    groups: the speaker of each clip (the CV folds); score(i, pred) -> float for clip i (higher is
    better; default: mean component correlation). Lambda = the best frame-weighted LOSO score."""
    allf = np.concatenate(feats).astype(np.float64)
    _, _, vt = np.linalg.svd(allf - allf.mean(0), full_matrices=False)
    # fewer frames than `rank` (tiny data): the missing directions stay zero, shapes stay fixed
    proj = np.zeros((allf.shape[1], rank))
    proj[:, :min(rank, len(vt))] = vt[:rank].T                              # (Fa, rank)
    X = [windows(f.astype(np.float64) @ proj, context) for f in feats]     # (T, rank*(2k+1))
    Y = [t.astype(np.float64) for t in targets]
    stats = [(x.T @ x, x.T @ y, x.sum(0), y.sum(0), len(x)) for x, y in zip(X, Y)]

    def solve(idx, lam):
        A = sum(stats[i][0] for i in idx)
        b = sum(stats[i][1] for i in idx)
        n = sum(stats[i][4] for i in idx)
        xm = sum(stats[i][2] for i in idx) / n
        ym = sum(stats[i][3] for i in idx) / n
        A = A - n * np.outer(xm, xm)
        b = b - n * np.outer(xm, ym)
        w = np.linalg.solve(A + lam * np.eye(len(A)), b)
        return w, ym - xm @ w

    score = score or (lambda i, p: _corr_score(p, Y[i]))
    folds = sorted(set(groups))
    cv, preds = {}, {}
    for lam in lambdas:
        tot = wsum = 0.0
        preds[lam] = {}
        for g in folds:
            tr = [i for i, gi in enumerate(groups) if gi != g]
            if not tr:           # a single speaker: no out-of-speaker fit exists
                tr = list(range(len(groups)))
            w, b0 = solve(tr, lam)
            for i, gi in enumerate(groups):
                if gi == g:
                    p = X[i] @ w + b0
                    preds[lam][names[i]] = p.astype(np.float32)
                    s = score(i, p)
                    if np.isfinite(s):
                        tot += s * len(p)
                        wsum += len(p)
        cv[float(lam)] = tot / max(wsum, 1.0)
    lam = max(cv, key=cv.get)
    w, b0 = solve(list(range(len(X))), lam)
    n_mouth = w.shape[1]
    weight = w.reshape(2 * context + 1, rank, n_mouth).transpose(2, 1, 0)   # (n_mouth, rank, 2k+1)
    return RidgePrior(proj=proj.astype(np.float32), weight=np.ascontiguousarray(weight, np.float32),
                      bias=b0.astype(np.float32), lam=float(lam), cv=cv, loso=preds[lam])


def apply(prior: RidgePrior, feats: np.ndarray, context: int) -> np.ndarray:
    """Numpy reference of the model-side map (tests): (T, Fa) normalised -> (T, n_mouth)."""
    x = windows(feats @ prior.proj, context)                                # (T, (2k+1) rank)
    w = prior.weight.transpose(2, 1, 0).reshape(-1, prior.weight.shape[0])  # ((2k+1) rank, n_mouth)
    return x @ w + prior.bias
