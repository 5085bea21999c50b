"""PNG plots: mouth opening vs speech envelope over time, speaking turns shaded.

People read a plot of the mouth against the sound faster than a table: a lag shows as a
visible offset, a frozen mouth as a flat line, a mouth moving while listening as motion
inside an unshaded band.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from echo_cli.schema import Turn


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for i, v in enumerate(np.r_[mask, False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


def plot_mouth_envelope(path: str | Path, mouth: np.ndarray, envelope: np.ndarray, fps: float, *,
                        speaking: np.ndarray | None = None, turns: Sequence[Turn] = (),
                        title: str = "", lag_frames: float | None = None, max_seconds: float | None = 20.0) -> Path:
    """Write a PNG; mouth on the left axis, envelope (dB) on the right. Avatar turns (or
    voice activity) shaded green, user turns shaded grey. Returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from echo_cli.io_atomic import atomic_path

    n = len(mouth)
    if max_seconds:
        n = min(n, int(max_seconds * fps))
    t = np.arange(n) / fps
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    if turns:
        for tr in turns:
            if tr.start < n / fps:
                ax.axvspan(tr.start, min(tr.end, n / fps), color="tab:green" if tr.speaker == "avatar" else "0.8",
                           alpha=0.25, lw=0, label=None)
    elif speaking is not None:
        for a, b in _spans(np.asarray(speaking[:n], bool)):
            ax.axvspan(a / fps, b / fps, color="tab:green", alpha=0.15, lw=0)
    ax.plot(t, mouth[:n], color="tab:red", lw=1.3, label="mouth opening / IOD")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mouth opening / IOD", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(t, envelope[:n], color="tab:blue", lw=0.9, alpha=0.8, label="speech envelope (dB)")
    ax2.set_ylabel("speech envelope (dB)", color="tab:blue")
    sub = f"  (lag {lag_frames:+.1f} frames)" if lag_frames is not None else ""
    ax.set_title((title + sub)[:110], fontsize=10)
    ax.set_xlim(0, max(t[-1] if n else 1.0, 1e-3))
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


__all__ = ["plot_mouth_envelope"]
