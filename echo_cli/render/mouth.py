"""Inner-mouth model: what an open mouth shows when the reference's mouth is closed.

A mesh warp can only stretch pixels that exist in the reference. With a closed reference
mouth, an opening target would show stretched lip texture; instead the target's inner-lip
polygon is filled with a synthesised interior:
  - a dark cavity whose colour comes from the reference lips (darkened, reddish-brown),
    darker towards the centre,
  - an upper teeth band hanging below the upper inner lip (height grows with the opening,
    capped), and a thinner lower band above the lower lip when the mouth is wide open,
  - soft edges (small blur of the polygon alpha) so the lips keep a clean contour.
When the reference mouth is open (it shows its own interior and teeth), the warp maps that
interior directly and this model is not used (see MeshWarpRenderer).
Everything happens in the mouth's bounding box only, so it costs well under a millisecond.
"""
from __future__ import annotations

import numpy as np

from echo_cli.motion import regions as R


class MouthModel:
    def __init__(self, lip_rgb: np.ndarray, skin_rgb: np.ndarray):
        lip = np.asarray(lip_rgb, np.float32)
        self.cavity = np.clip(lip * 0.28 + np.array([10, 2, 2], np.float32), 0, 255)      # dark red-brown
        self.cavity_deep = self.cavity * 0.45
        skin = np.asarray(skin_rgb, np.float32)
        # teeth: ivory, as bright as the face's light allows (never brighter than the skin
        # by much: pure white teeth on a dim portrait read as a sticker), tinted by the skin
        light = float(np.clip(skin.mean() / 170.0, 0.45, 1.05))
        tint = skin / max(float(skin.mean()), 1.0)
        self.teeth = np.clip(np.array([214, 206, 190], np.float32) * light * (0.85 + 0.15 * tint), 0, 255)

    @classmethod
    def from_reference(cls, rgb: np.ndarray, pts2d: np.ndarray) -> "MouthModel":
        """Colours sampled from the reference at its (work-space) landmarks."""
        h, w = rgb.shape[:2]

        def sample(idx):
            p = np.clip(np.round(pts2d[list(idx)]).astype(int), 0, [w - 1, h - 1])
            return rgb[p[:, 1], p[:, 0]].astype(np.float32).mean(0)
        lip = sample((0, 17, 37, 267, 84, 314))
        skin = sample((50, 280, 205, 425))           # cheeks
        return cls(lip, skin)

    def draw(self, img: np.ndarray, pts2d: np.ndarray, iod: float, opening: float) -> None:
        """Paint the interior into img (in place) inside the inner-lip polygon of pts2d (work px).

        iod: inter-ocular distance in work px; opening: inner-lip gap / iod (measures.mouth_opening).
        """
        import cv2

        if opening < 0.015:
            return
        poly = pts2d[list(R.LIPS_INNER)].astype(np.float32)
        h, w = img.shape[:2]
        pad = 3
        x0 = int(max(0, np.floor(poly[:, 0].min()) - pad)); x1 = int(min(w, np.ceil(poly[:, 0].max()) + pad))
        y0 = int(max(0, np.floor(poly[:, 1].min()) - pad)); y1 = int(min(h, np.ceil(poly[:, 1].max()) + pad))
        if x1 - x0 < 3 or y1 - y0 < 2:
            return
        bw, bh = x1 - x0, y1 - y0
        off = np.array([x0, y0], np.float32)
        sh = 4                                                    # sub-pixel polygon edges
        to_i = lambda p: np.round((p - off) * (1 << sh)).astype(np.int32)
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillPoly(mask, [to_i(poly)], 255, cv2.LINE_AA, shift=sh)
        if not mask.any():
            return
        # cavity colour: darker towards the middle of the opening
        gap_px = opening * iod
        yy = np.arange(bh, dtype=np.float32)[:, None] + y0
        up = pts2d[list(R.LIPS_INNER_UPPER)]; lo = pts2d[list(R.LIPS_INNER_LOWER)]
        mid_y = 0.5 * (up[:, 1].mean() + lo[:, 1].mean())
        depth = np.clip(1.0 - np.abs(yy - mid_y) / max(gap_px * 0.6, 1.0), 0, 1)[..., None]   # (bh, 1, 1)
        fill = self.cavity[None, None] * (1 - depth) + self.cavity_deep[None, None] * depth
        fill = np.broadcast_to(fill, (bh, bw, 3)).copy()
        # upper teeth: the upper inner lip shifted down by the band height
        band = min(0.5 * gap_px, 0.08 * iod)
        if band >= 1.0:
            upper = up.astype(np.float32)
            teeth_poly = np.concatenate([upper, (upper + [0.0, band])[::-1]], 0)
            tm = np.zeros((bh, bw), np.uint8)
            cv2.fillPoly(tm, [to_i(teeth_poly)], 255, cv2.LINE_AA, shift=sh)
            # shade the teeth a little darker at the corners (they recede into the cheeks)
            cx = 0.5 * (upper[0, 0] + upper[-1, 0]); half_w = max(0.5 * abs(upper[-1, 0] - upper[0, 0]), 1.0)
            xx = np.arange(bw, dtype=np.float32)[None, :] + x0
            shade = 1.0 - 0.45 * np.clip(np.abs(xx - cx) / half_w, 0, 1) ** 2          # (1, bw)
            # and vertically: in the lip's shadow at the top, a soft translucent bottom edge
            lip_y = np.interp(xx[0], upper[:, 0] if upper[0, 0] < upper[-1, 0] else upper[::-1, 0],
                              upper[:, 1] if upper[0, 0] < upper[-1, 0] else upper[::-1, 1])
            f = np.clip((yy - lip_y[None, :]) / band, 0, 1)                              # (bh, bw)
            vert = 0.72 + 0.28 * np.clip(f / 0.35, 0, 1)
            shade = (shade * vert)[..., None]
            fade = np.clip((1.0 - f) / 0.3, 0, 1)[..., None]
            ta = (tm.astype(np.float32) / 255.0)[..., None] * fade
            fill = fill * (1 - ta) + (self.teeth * shade) * ta
        if opening > 0.12:                                         # lower teeth when wide open
            lower_band = min(0.25 * gap_px, 0.04 * iod)
            lower = lo.astype(np.float32)
            lp = np.concatenate([lower, (lower - [0.0, lower_band])[::-1]], 0)
            lm = np.zeros((bh, bw), np.uint8)
            cv2.fillPoly(lm, [to_i(lp)], 255, cv2.LINE_AA, shift=sh)
            la = (lm.astype(np.float32) / 255.0)[..., None] * 0.8
            fill = fill * (1 - la) + (self.teeth * 0.8) * la
        alpha = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0
        region = img[y0:y1, x0:x1].astype(np.float32)
        img[y0:y1, x0:x1] = np.clip(region + alpha * (fill - region) + 0.5, 0, 255).astype(np.uint8)
