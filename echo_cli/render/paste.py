"""Pure crop geometry for the renderer and the feathered paste-back.

The renderer never works on the whole reference when it does not have to: it renders a
box around the head (at a capped working resolution) and pastes the result back into the
full-resolution original with a feathered edge, so an 8K portrait or a full-body shot with
a small face costs what its face costs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CropGeometry:
    x0: int                 # crop box in reference pixels (inside the image)
    y0: int
    x1: int
    y1: int
    scale: float            # working pixels per reference pixel (<= 1)

    @property
    def size(self) -> tuple[int, int]:
        """Working (w, h)."""
        return (max(2, int(round((self.x1 - self.x0) * self.scale))),
                max(2, int(round((self.y1 - self.y0) * self.scale))))

    def to_work(self, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, np.float32)[..., :2]
        return (p - np.array([self.x0, self.y0], np.float32)) * self.scale

    def from_work(self, pts: np.ndarray) -> np.ndarray:
        return np.asarray(pts, np.float32) / self.scale + np.array([self.x0, self.y0], np.float32)


def head_box(landmarks: np.ndarray, width: int, height: int, margin: float = 2.4,
             max_work: int = 1024) -> CropGeometry:
    """A box of side `margin` x the face extent around the face (hair, chin, some neck),
    clipped to the image; working scale so that its longer side is at most max_work."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    lo, hi = lm.min(0), lm.max(0)
    c = (lo + hi) / 2.0
    c[1] -= 0.08 * (hi - lo)[1]                   # hair above the brows
    half = margin * (hi - lo).max() / 2.0
    x0 = int(max(0, np.floor(c[0] - half))); y0 = int(max(0, np.floor(c[1] - half)))
    x1 = int(min(width, np.ceil(c[0] + half))); y1 = int(min(height, np.ceil(c[1] + half)))
    side = max(x1 - x0, y1 - y0)
    scale = min(1.0, max_work / max(side, 1))
    return CropGeometry(x0, y0, x1, y1, float(scale))


def feather_mask(w: int, h: int, feather: int, touches: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """(h, w, 1) float32 alpha: 1 inside, ramping to 0 over `feather` px at each crop edge
    that lies inside the image (edges on the image border need no seam)."""
    left, top, right, bottom = touches
    ax = np.ones(w, np.float32); ay = np.ones(h, np.float32)
    f = max(1, int(feather))
    ramp = (np.arange(f, dtype=np.float32) + 0.5) / f
    if not left:
        ax[:f] = np.minimum(ax[:f], ramp[: min(f, w)])
    if not right:
        ax[-f:] = np.minimum(ax[-f:], ramp[::-1][-min(f, w):])
    if not top:
        ay[:f] = np.minimum(ay[:f], ramp[: min(f, h)])
    if not bottom:
        ay[-f:] = np.minimum(ay[-f:], ramp[::-1][-min(f, h):])
    return (ay[:, None] * ax[None, :])[..., None]


def paste_back(full: np.ndarray, crop_rgb: np.ndarray, geom: CropGeometry, mask: np.ndarray | None,
               out: np.ndarray | None = None, feather: int = 0) -> np.ndarray:
    """Blend a rendered crop (working resolution) into a copy of the full frame.

    mask: (h, w, 1) feather alpha or None (plain copy). Only the feather band (`feather` px
    along each edge, 0 = the whole box) is blended in float; the inside is copied.
    """
    import cv2

    out = full.copy() if out is None else out
    cw, ch = geom.x1 - geom.x0, geom.y1 - geom.y0
    if crop_rgb.shape[1] != cw or crop_rgb.shape[0] != ch:
        crop_rgb = cv2.resize(crop_rgb, (cw, ch), interpolation=cv2.INTER_LINEAR)
    region = out[geom.y0:geom.y1, geom.x0:geom.x1]
    if mask is None:
        region[...] = crop_rgb
        return out
    f = int(feather)
    if f <= 0 or 2 * f >= min(cw, ch):
        strips = [(slice(None), slice(None))]
    else:
        region[f:-f, f:-f] = crop_rgb[f:-f, f:-f]
        strips = [(slice(0, f), slice(None)), (slice(ch - f, ch), slice(None)),
                  (slice(f, ch - f), slice(0, f)), (slice(f, ch - f), slice(cw - f, cw))]
    for sy, sx in strips:
        r = region[sy, sx].astype(np.float32)
        blend = r + mask[sy, sx] * (crop_rgb[sy, sx].astype(np.float32) - r)
        region[sy, sx] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    return out
