"""Baselines for context, built from a real clip's measurement and scored by the same code.

- ceiling: the real clip itself.
- still: the clip's first face frame held for the whole clip, with the clip's audio (the
  floor: what a "still reference image + audio" renderer would score).
- mismatched: the real video with another clip's audio.
- shifted(k): the real video delayed by k frames against its audio (frame t shows what
  the camera saw at t - k); a sound lag estimate must come out as +k.

They transform a `Measurement` rather than re-encoding video: the landmarks, thumbnails,
frame differences and audio are exactly what re-measuring such a video would give (a
still frame re-detected gives the same landmarks each frame), without the cost of
encoding and re-tracking every baseline.
"""
from __future__ import annotations

import numpy as np

from echo_cli.eval.measure import Measurement


def ceiling(m: Measurement) -> Measurement:
    return m.replace(notes=m.notes + ["baseline: ceiling (the real clip)"])


def still(m: Measurement) -> Measurement:
    """The first frame with a detected face, held for every frame, with the real audio."""
    det = np.flatnonzero(m.detected)
    i = int(det[0]) if len(det) else 0
    T = m.n_frames
    return m.replace(
        landmarks=np.repeat(m.landmarks[i:i + 1], T, 0),
        detected=np.ones(T, bool),
        frame_diffs=np.zeros(max(0, T - 1), np.float32),
        thumbs=np.repeat(m.thumbs[i:i + 1], len(m.thumbs), 0),
        euler=None if m.euler is None else np.repeat(m.euler[i:i + 1], T, 0),
        notes=m.notes + [f"baseline: still (frame {i} held, real audio)"],
    )


def _fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Loop or trim a wave to n samples."""
    if len(wave) >= n:
        return wave[:n].copy()
    reps = int(np.ceil(n / max(1, len(wave))))
    return np.tile(wave, reps)[:n]


def mismatched(m: Measurement, other_wave: np.ndarray, other_name: str = "another clip") -> Measurement:
    """The real video with another clip's audio (looped or trimmed to the same length)."""
    n = len(m.wave) if m.wave is not None else int(round(m.duration * 16000))
    return m.replace(wave=_fit_length(np.asarray(other_wave, np.float32), n),
                     notes=m.notes + [f"baseline: mismatched audio from {other_name}"])


def shifted(m: Measurement, k: int) -> Measurement:
    """Video delayed by k frames (k < 0: advanced); edges hold the first/last frame."""
    T = m.n_frames
    idx = np.clip(np.arange(T) - k, 0, T - 1)
    thumbs = m.thumbs[np.clip(np.arange(len(m.thumbs)) - k, 0, len(m.thumbs) - 1)]
    t = thumbs.astype(np.float32)
    diffs = np.abs(t[1:] - t[:-1]).mean((1, 2)).astype(np.float32) if len(t) > 1 else np.zeros(0, np.float32)
    return m.replace(landmarks=m.landmarks[idx], detected=m.detected[idx], thumbs=thumbs,
                     frame_diffs=diffs, euler=None if m.euler is None else m.euler[idx],
                     notes=m.notes + [f"baseline: video shifted by {k:+d} frames"])


BASELINES = ("ceiling", "still", "mismatched", "shifted")

__all__ = ["ceiling", "still", "mismatched", "shifted", "BASELINES"]
