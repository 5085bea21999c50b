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

from echo_cli.errors import InputError

MAX_REFERENCE_PIXELS = 80_000_000        # ~ 10K x 8K; beyond this PIL refuses (decompression bomb)


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


# ---------------------------------------------------------------- reference images
def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any array image (gray, gray+alpha, RGB, RGBA; uint8/uint16/float) -> (H, W, 3) uint8.

    Alpha is composited over white (a transparent portrait background becomes plain white
    rather than whatever colour the hidden pixels hold); 16-bit and float are rescaled.
    Integer paths stay in uint8/uint16 so an 8K image costs ~2x its size, not 8x.
    """
    a = np.asarray(img)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.clip(a * 255.0 if a.max(initial=0) <= 1.0 else a, 0, 255)
        a = (a + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    c = a.shape[2]
    if c in (2, 4):
        alpha = a[..., -1:].astype(np.uint16)
        rgb = a[..., :-1].astype(np.uint16)
        a = ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
        c -= 1
    if c == 1:
        a = np.repeat(a, 3, axis=2)
    elif c != 3:
        raise InputError(f"image has {c} channels", fix="give an RGB, RGBA or grayscale image")
    return np.ascontiguousarray(a)


def load_reference_image(path: str | Path) -> np.ndarray:
    """Read a still (or a video's first frame) as (H, W, 3) uint8 RGB, display-oriented.

    Handles grayscale, palette, CMYK, alpha and 16-bit images (via Pillow, EXIF orientation
    applied); anything Pillow cannot open goes through ffmpeg (media.video_io.read_image).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("reference image not found", path=path, fix="check the path")
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:            # pragma: no cover - Pillow ships with matplotlib
        Image = None
    if Image is not None:
        try:
            Image.MAX_IMAGE_PIXELS = MAX_REFERENCE_PIXELS
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode == "CMYK":
                    im = im.convert("RGB")
                elif im.mode == "P":
                    im = im.convert("RGBA")
                elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im)
                    shift = 8 if arr.max(initial=0) > 255 else 0
                    return to_rgb8((np.clip(arr, 0, 65535).astype(np.uint32) >> shift).astype(np.uint8))
                elif im.mode not in ("RGB", "RGBA", "L", "LA"):
                    im = im.convert("RGBA")
                return to_rgb8(np.asarray(im))
        except Image.DecompressionBombError as e:
            raise InputError("image is too large", path=path,
                             fix=f"downscale it below {MAX_REFERENCE_PIXELS // 1_000_000} megapixels") from e
        except (UnidentifiedImageError, OSError):
            pass                     # a video or an exotic format: let ffmpeg try
    from echo_cli.media.video_io import read_image
    return to_rgb8(read_image(path))
