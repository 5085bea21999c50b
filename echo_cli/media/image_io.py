"""Still images -> (H, W, 3) uint8 RGB, display-oriented: one decoder for every still the
tool reads (the avatar's portrait is tracked and rendered from the same pixels).

Pillow reads the image formats (EXIF orientation; grayscale, palette, CMYK, alpha, 16-bit
and float modes); whatever Pillow does not know (a video's first frame, an exotic format)
goes through ffmpeg. An image Pillow knows but cannot finish (a cut-off download) is an
error: ffmpeg would fill the missing rows with green and the render would succeed on them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from echo_cli.errors import InputError

MAX_REFERENCE_PIXELS = 80_000_000        # ~ 10K x 8K; beyond this PIL refuses (decompression bomb)


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


def read_still(path: str | Path, what: str = "image") -> np.ndarray:
    """Read a still (or a video's first frame) as (H, W, 3) uint8 RGB, display-oriented.
    `what` names the input in the not-found error (e.g. "reference image")."""
    path = Path(path)
    if not path.is_file():
        problem = ("is not a file" if path.exists() else "is a broken or looping symbolic link"
                   if path.is_symlink() else "not found")
        raise InputError(f"{what} {problem}", path=path, fix="check the path")
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:            # pragma: no cover - Pillow ships with matplotlib
        Image = None
    if Image is not None:
        try:
            Image.MAX_IMAGE_PIXELS = MAX_REFERENCE_PIXELS
            with Image.open(path) as im:
                try:
                    im.load()
                except OSError as e:
                    raise InputError(f"image is truncated or damaged ({e})", path=path,
                                     fix="copy or export the image again") from None
                im = ImageOps.exif_transpose(im)
                if im.mode == "CMYK":
                    im = im.convert("RGB")
                elif im.mode == "P":
                    im = im.convert("RGBA")
                elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im)
                    shift = 8 if arr.max(initial=0) > 255 else 0
                    return to_rgb8((np.clip(arr, 0, 65535).astype(np.uint32) >> shift).astype(np.uint8))
                elif im.mode == "F":             # float TIFF: 0..1 or 0..255 (to_rgb8 rescales)
                    return to_rgb8(np.nan_to_num(np.asarray(im, dtype=np.float32)))
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
