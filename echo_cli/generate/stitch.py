"""Cross-fade weights for stitching overlapping chunks in motion space (pure numpy)."""
from __future__ import annotations

import numpy as np


def crossfade_weights(overlap: int) -> np.ndarray:
    """(overlap,) weights of the NEW chunk across the overlap; the old chunk gets 1 - w.

    A raised-cosine ramp that never reaches 0 or 1 inside the overlap (sampled at frame
    centres), so both chunks contribute to every overlapped frame and the blend has zero
    slope at both ends (no velocity kink at the seam).
    """
    if overlap <= 0:
        return np.zeros(0, np.float32)
    x = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
    return (0.5 - 0.5 * np.cos(np.pi * x)).astype(np.float32)


def blend(old_tail: np.ndarray, new_head: np.ndarray) -> np.ndarray:
    """Cross-fade two (overlap, D) arrays covering the same frames."""
    w = crossfade_weights(old_tail.shape[0])[:, None]
    return (1.0 - w) * old_tail + w * new_head
