"""Renderer interface and reference-image loading.

A renderer turns landmarks into frames of one reference image:

    r = MeshWarpRenderer()
    r.prepare(reference_rgb (H, W, 3) uint8, reference_landmarks (478, 3) pixels)
    frame = r.render(target_landmarks (478, 3) pixels of the same image)   # (H, W, 3) uint8
    for frame in r.render_iter(targets (T, 478, 3) or an iterator of (478, 3)): ...

Frames come out one at a time (or `render_chunk` for a small array), so a caller streams
them into a VideoWriter with constant memory. A neural renderer can later implement the
same three methods.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from echo_cli.media.image_io import MAX_REFERENCE_PIXELS, read_still, to_rgb8  # noqa: F401 (re-exported)


class Renderer(abc.ABC):
    """Reference image + its landmarks + target landmarks per frame -> frame."""

    @abc.abstractmethod
    def prepare(self, reference_rgb: np.ndarray, reference_landmarks: np.ndarray) -> None:
        """Precompute everything that depends only on the reference."""

    @abc.abstractmethod
    def render(self, target_landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) target landmarks in reference-image pixels -> (H, W, 3) uint8 frame."""

    def render_chunk(self, targets: np.ndarray) -> np.ndarray:
        """(N, 478, 3) -> (N, H, W, 3) uint8. Keep N small: this holds N frames."""
        return np.stack([self.render(t) for t in np.asarray(targets)])

    def render_iter(self, targets: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stream frames for any iterable of (478, 3) targets (or (N, 478, 3) chunks)."""
        for t in targets:
            t = np.asarray(t)
            if t.ndim == 3:
                for one in t:
                    yield self.render(one)
            else:
                yield self.render(t)


def load_reference_image(path: str | Path) -> np.ndarray:
    """The avatar's reference portrait (or a video's first frame), as media.image_io reads it."""
    return read_still(path, "reference image")
