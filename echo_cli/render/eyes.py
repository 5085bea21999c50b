"""Eyelid model: blinks and squints that close the eye with skin, not a squashed eyeball.

The mesh warp alone squeezes the reference eye (sclera, iris, lashes) into the thin gap of
a closing eye. When the target eye opening falls well below the reference's, the eye
polygon of the target is covered with upper-lid skin: the reference texture just above the
upper lid (shifted up by the reference eye height), mapped by a least-squares affine of
the lid contours, faded in with the closure, plus a soft lash line along the lid edge.
Cost: two small affine warps in the eye boxes only.
"""
from __future__ import annotations

import numpy as np

from echo_cli.motion import regions as R

EYES = ((R.RIGHT_EYE, R.RIGHT_EYE_UPPER, R.RIGHT_EYE_LOWER, R.RIGHT_LID_PAIRS),
        (R.LEFT_EYE, R.LEFT_EYE_UPPER, R.LEFT_EYE_LOWER, R.LEFT_LID_PAIRS))


def _opening(pts: np.ndarray, pairs) -> float:
    return float(np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in pairs]))


def _smoothstep(x: float, a: float, b: float) -> float:
    t = min(max((x - a) / (b - a), 0.0), 1.0)
    return t * t * (3 - 2 * t)


class EyelidModel:
    def __init__(self, ref_rgb: np.ndarray, ref_pts: np.ndarray):
        """ref_rgb: the working reference crop; ref_pts (478, 2) its landmarks in work pixels."""
        self.ref = ref_rgb
        self.ref_pts = np.asarray(ref_pts, np.float32)
        self.ref_open = [_opening(self.ref_pts, pairs) for _, _, _, pairs in EYES]
        # lash colour: the darkest pixels along the reference upper lid
        cols = []
        h, w = ref_rgb.shape[:2]
        for _, upper, _, _ in EYES:
            p = np.clip(np.round(self.ref_pts[list(upper)]).astype(int), 0, [w - 1, h - 1])
            cols.append(ref_rgb[p[:, 1], p[:, 0]].astype(np.float32))
        c = np.concatenate(cols)
        self.lash = c[np.argsort(c.mean(1))[: max(2, len(c) // 3)]].mean(0) * 0.8

    def draw(self, img: np.ndarray, pts: np.ndarray, iod: float) -> None:
        """Cover closing eyes of the target (work-pixel landmarks `pts`) in place."""
        import cv2

        h, w = img.shape[:2]
        for k, (contour, upper, lower, pairs) in enumerate(EYES):
            ref_open = self.ref_open[k]
            if ref_open < 1e-3:
                continue
            closure = 1.0 - _opening(pts, pairs) / ref_open
            alpha = _smoothstep(closure, 0.3, 0.8)
            if alpha <= 0.0:
                continue
            poly = pts[list(contour)].astype(np.float32)
            pad = int(max(3, 0.06 * iod))
            x0 = int(max(0, np.floor(poly[:, 0].min()) - pad)); x1 = int(min(w, np.ceil(poly[:, 0].max()) + pad))
            y0 = int(max(0, np.floor(poly[:, 1].min()) - pad)); y1 = int(min(h, np.ceil(poly[:, 1].max()) + pad))
            if x1 - x0 < 4 or y1 - y0 < 3:
                continue
            # source: target upper lid -> ref upper lid lifted by the eye height; target lower
            # lid -> ref upper lid (the lid skin slides down over the eye)
            up_r = self.ref_pts[list(upper)]; lo_order = list(lower)
            lift = np.array([0.0, 1.1 * ref_open], np.float32)
            src = np.concatenate([up_r - lift, self._match(up_r, self.ref_pts[lo_order])])
            dst = np.concatenate([pts[list(upper)], pts[lo_order]]).astype(np.float32)
            m, _ = cv2.estimateAffine2D(dst, src, method=cv2.LMEDS)
            if m is None:
                continue
            m = m.copy(); m[:, 2] += m[:, 0] * x0 + m[:, 1] * y0          # box pixel -> ref pixel
            skin = cv2.warpAffine(self.ref, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            off = np.array([x0, y0], np.float32)
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            ipoly = np.round((poly - off) * 16).astype(np.int32)
            cv2.fillPoly(mask, [ipoly], 255, cv2.LINE_AA, shift=4)
            # grown a little: the squeezed sclera and lashes sit right on the contour
            cv2.polylines(mask, [ipoly], True, 255, max(1, int(round(0.03 * iod))), cv2.LINE_AA, shift=4)
            # lash line along the lower lid edge where the closed lids meet
            lash = np.zeros_like(mask)
            line = np.round((pts[lo_order] - off) * 16).astype(np.int32)
            cv2.polylines(lash, [line], False, 255, max(1, int(round(0.02 * iod))), cv2.LINE_AA, shift=4)
            k_blur = 2 * max(1, int(0.015 * iod)) + 1
            a = cv2.GaussianBlur(mask, (k_blur, k_blur), 0).astype(np.float32)[..., None] / 255.0 * alpha
            la = cv2.GaussianBlur(lash, (3, 3), 0).astype(np.float32)[..., None] / 255.0 * alpha * 0.7
            region = img[y0:y1, x0:x1].astype(np.float32)
            region = region + a * (skin - region)
            region = region + la * (self.lash - region)
            img[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

    @staticmethod
    def _match(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """For each lower-lid point, the upper-lid curve at the same x (linear interpolation)."""
        order = np.argsort(upper[:, 0])
        ux, uy = upper[order, 0], upper[order, 1]
        return np.stack([lower[:, 0], np.interp(lower[:, 0], ux, uy)], 1).astype(np.float32)
