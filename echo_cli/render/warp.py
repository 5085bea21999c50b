"""MeshWarpRenderer: a dense piecewise-affine warp of the reference over a landmark mesh.

prepare():
  - a head box around the face (hair, chin, some neck; render/paste.py) is cut from the
    reference and scaled to a capped working resolution (max_work px);
  - mesh vertices = the landmarks that carry shape (lips, eyes, irises, brows, nose, face
    oval) plus a farthest-point sample of the rest, a ring of points around the face that
    follows the head's 2-D similarity motion (damped: hair and neck move less than the
    face), and a fixed frame of points on the box edge (background stays still and the
    paste-back has no seam);
  - a Delaunay triangulation of those points in the reference (cv2.Subdiv2D: the same
    triangles as scipy's Delaunay, without importing scipy.spatial on every render's start).
render(target):
  - per triangle the affine map target -> reference (closed-form 3x3 inverses, batched);
  - a triangle-index image is rasterised in the target at half the working resolution,
    far triangles first (MediaPipe z), so the near side of a turned head wins;
  - the per-pixel maps (6 coefficients gathered per pixel) are upsampled and applied with
    one cv2.remap of the reference crop;
  - an open target mouth over a closed reference mouth gets a synthesised interior and
    teeth (render/mouth.py); a reference with an open mouth has its own interior warped;
  - eyelids and irises are mesh vertices, so gaze moves the iris texture through the same
    warp; a closing eye is covered with upper-lid skin and a lash line (render/eyes.py);
  - the crop is pasted back into the full-resolution reference (feathered when resampled).
Cost per frame is a few hundred fillConvexPoly calls on a half-size index image, one
gather of the per-triangle coefficients, two map resizes and one fixed-point remap: see
docs/performance.md (`echo-cli bench render`, "Speed round 3").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError
from echo_cli.motion import measures, regions as R
from echo_cli.render.base import Renderer, to_rgb8
from echo_cli.render.eyes import EyelidModel
from echo_cli.render.mouth import MouthModel
from echo_cli.render.paste import CropGeometry, feather_mask, head_box, paste_back

logger = log.get("echo_cli.render.warp")

# Landmarks that carry the face's shape: always mesh vertices.
KEY_POINTS = tuple(sorted(set(R.lips_all()) | set(R.eyes_all()) | set(R.IRISES) | set(R.brows_all())
                          | set(R.NOSE) | set(R.FACE_OVAL)))
RIGID_POINTS = tuple(sorted(set(R.NOSE_BRIDGE) | set(R.EYE_OUTER_CORNERS) | set(R.EYE_INNER_CORNERS)
                            | {10, 338, 109, 297, 67, 234, 454}))


@dataclass(frozen=True)
class WarpSettings:
    margin: float = 2.0            # head box side / face extent
    max_work: int = 1024           # longest side of the working crop (pixels)
    n_extra: int = 40              # extra mesh vertices (farthest-point sample of the other landmarks)
    ring_scale: float = 1.4        # ring radius / face-oval radius
    ring_follow_top: float = 0.85  # how much of the head motion the ring follows above the eyes
    ring_follow_bottom: float = 0.35  # ... and below the chin (neck, shoulders)
    border_step: int = 6           # fixed points per box edge
    map_scale: float = 0.5         # index/map resolution relative to the working crop
    open_ref_mouth: float = 0.06   # reference mouth opening (/IOD) above which its own interior is used
    feather: float = 0.04          # paste-back feather / box side (when the crop is resampled)
    eyelids: bool = True           # cover closing eyes with lid skin (render/eyes.py)


def _farthest_points(pts: np.ndarray, start: np.ndarray, k: int) -> list[int]:
    """Greedy farthest-point sample of k indices of pts, away from the `start` points."""
    d = np.min(np.linalg.norm(pts[:, None] - start[None], axis=2), axis=1)
    out = []
    for _ in range(k):
        i = int(np.argmax(d))
        if d[i] <= 0:
            break
        out.append(i)
        d = np.minimum(d, np.linalg.norm(pts - pts[i], axis=1))
    return out


def _similarity_2d(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity src -> dst (2-D)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    den = (a ** 2).sum()
    p = (a * b).sum() / den
    q = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / den
    m = np.array([[p, -q], [q, p]])
    return np.concatenate([m, (md - m @ ms)[:, None]], 1)


def _affines(tgt_tri: np.ndarray, ref_tri: np.ndarray) -> np.ndarray:
    """(n, 3, 2) target and reference triangles -> (n, 6) maps target (x, y) -> reference.

    Closed-form inverse of [[x0 x1 x2], [y0 y1 y2], [1 1 1]]; degenerate target triangles
    (zero area: they cover no pixel) get a clamped determinant instead of a NaN.
    """
    x0, y0 = tgt_tri[:, 0, 0], tgt_tri[:, 0, 1]
    x1, y1 = tgt_tri[:, 1, 0], tgt_tri[:, 1, 1]
    x2, y2 = tgt_tri[:, 2, 0], tgt_tri[:, 2, 1]
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    det = np.where(np.abs(det) < 1e-6, np.where(det < 0, -1e-6, 1e-6), det)
    inv = np.empty((len(det), 3, 3), np.float64)       # inverse of M (columns = vertices)
    inv[:, 0, 0] = y1 - y2; inv[:, 0, 1] = x2 - x1; inv[:, 0, 2] = x1 * y2 - x2 * y1
    inv[:, 1, 0] = y2 - y0; inv[:, 1, 1] = x0 - x2; inv[:, 1, 2] = x2 * y0 - x0 * y2
    inv[:, 2, 0] = y0 - y1; inv[:, 2, 1] = x1 - x0; inv[:, 2, 2] = x0 * y1 - x1 * y0
    inv /= det[:, None, None]
    a = np.einsum("nkc,nkj->ncj", ref_tri, inv)          # (n, 2, 3): ref = a @ [x, y, 1]
    return a.reshape(-1, 6)


def delaunay(pts: np.ndarray) -> np.ndarray:
    """(n, 2) points -> (m, 3) vertex indices of their Delaunay triangles, in a canonical
    order (sorted vertex triples, sorted rows): scipy.spatial.Delaunay's triangles, via
    cv2.Subdiv2D, because importing scipy.spatial costs ~0.5 s of every render's start-up
    (tests/test_warp_speed.py compares both on tracked face meshes).

    Subdiv2D triangulates inside a frame of virtual far vertices and can miss a thin triangle
    on the convex hull; the renderer's meshes have a rectangle of fixed points as their hull,
    where that does not happen, and any point set whose triangles do not cover its hull's
    area falls back to scipy. Points closer than float32 resolution collapse onto the first
    (Subdiv2D keeps one vertex), as qhull leaves a duplicate out of every simplex.
    """
    import cv2

    p = np.asarray(pts, np.float64)
    lo = np.floor(p.min(0)) - 2.0
    hi = np.ceil(p.max(0)) + 2.0
    sd = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1])))
    first: dict[int, int] = {}
    for i, (x, y) in enumerate(p.tolist()):
        first.setdefault(sd.insert((x, y)), i)
    where = {}
    for v, i in first.items():
        (x, y), _ = sd.getVertex(v)
        where[(x, y)] = i
    tris = []
    for t in np.asarray(sd.getTriangleList(), np.float32).reshape(-1, 3, 2).tolist():
        v = [where.get((a, b)) for a, b in t]
        if None not in v:                  # a triangle on Subdiv2D's outer (virtual) vertices
            tris.append(sorted(v))
    tris = np.array(sorted(tris), np.int64).reshape(-1, 3)
    q = p[tris]
    e1, e2 = q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]
    covered = float(np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum() * 0.5)
    hull = float(cv2.contourArea(cv2.convexHull(p.astype(np.float32))))
    if covered < hull * (1.0 - 1e-5) - 1e-6:
        from scipy.spatial import Delaunay

        logger.debug("Subdiv2D missed hull triangles (%.1f of %.1f px^2): scipy Delaunay", covered, hull)
        tris = np.array(sorted(sorted(t) for t in Delaunay(p).simplices.tolist()), np.int64).reshape(-1, 3)
    return tris


class MeshWarpRenderer(Renderer):
    """The default renderer (see the module docstring)."""

    def __init__(self, settings: WarpSettings = WarpSettings()):
        self.s = settings
        self._ready = False

    # ------------------------------------------------------------ prepare
    def prepare(self, reference_rgb: np.ndarray, reference_landmarks: np.ndarray) -> None:
        import cv2

        ref = to_rgb8(reference_rgb)
        lm = np.asarray(reference_landmarks, np.float32)
        if lm.shape != (478, 3) or not np.isfinite(lm).all():
            raise InputError(f"reference landmarks must be finite (478, 3), got {lm.shape}",
                             fix="track the reference with refine_landmarks (478 points)")
        H, W = ref.shape[:2]
        self.height, self.width = H, W
        self.reference = ref
        self.ref_landmarks = lm
        g = head_box(lm, W, H, self.s.margin, self.s.max_work)
        self.geom: CropGeometry = g
        ww, wh = g.size
        crop = ref[g.y0:g.y1, g.x0:g.x1]
        self.ref_crop = crop if g.scale == 1.0 else cv2.resize(crop, (ww, wh), interpolation=cv2.INTER_AREA)
        ref_w = g.to_work(lm)                                              # (478, 2)
        # mesh vertices
        key = np.array(KEY_POINTS)
        others = np.setdiff1d(np.arange(468), key)
        extra = others[_farthest_points(ref_w[others], ref_w[key], self.s.n_extra)]
        self.mesh_idx = np.concatenate([key, extra]).astype(np.int64)
        # ring around the face oval, moving with the head (damped)
        oval = ref_w[list(R.FACE_OVAL)]
        c = oval.mean(0)
        ring = c + self.s.ring_scale * (oval[::2] - c)
        inside = ((ring[:, 0] > 2) & (ring[:, 0] < ww - 3) & (ring[:, 1] > 2) & (ring[:, 1] < wh - 3))
        ring = ring[inside]
        eye_y = ref_w[list(R.EYE_OUTER_CORNERS), 1].mean(); chin_y = ref_w[R.CHIN, 1]
        t = np.clip((ring[:, 1] - eye_y) / max(chin_y - eye_y, 1.0), 0, 1)
        self.ring_ref = ring.astype(np.float64)
        self.ring_follow = (self.s.ring_follow_top + t * (self.s.ring_follow_bottom - self.s.ring_follow_top))
        # fixed frame on the box edge
        n = self.s.border_step
        xs = np.linspace(0, ww - 1, n + 1); ys = np.linspace(0, wh - 1, n + 1)
        border = np.concatenate([np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, wh - 1)], 1),
                                 np.stack([np.zeros_like(ys[1:-1]), ys[1:-1]], 1),
                                 np.stack([np.full_like(ys[1:-1], ww - 1), ys[1:-1]], 1)])
        self.border = border.astype(np.float64)
        self.ref_pts = np.concatenate([ref_w[self.mesh_idx], self.ring_ref, self.border]).astype(np.float64)
        tri = delaunay(self.ref_pts)
        p = self.ref_pts[tri]
        e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) * 0.5
        self.tri = tri[area > 1e-4].astype(np.int64)                       # (n_tri, 3)
        self.ref_tri = self.ref_pts[self.tri]                               # (n_tri, 3, 2)
        self.n_mesh = len(self.mesh_idx)
        # rows of the mesh vertices the ring's similarity motion is fitted on
        self._rigid_rows = np.array([int(np.flatnonzero(self.mesh_idx == i)[0])
                                     for i in RIGID_POINTS if i in self.mesh_idx])
        # index/map grid at map_scale, coordinates in working pixels (pixel centres)
        ms = self.s.map_scale if min(ww, wh) >= 192 else 1.0
        self.map_size = (max(2, int(round(ww * ms))), max(2, int(round(wh * ms))))
        mw, mh = self.map_size
        self.map_sx, self.map_sy = ww / mw, wh / mh
        gx = (np.arange(mw, dtype=np.float32) + 0.5) * self.map_sx - 0.5
        gy = (np.arange(mh, dtype=np.float32) + 0.5) * self.map_sy - 0.5
        self.grid_x = np.ascontiguousarray(np.broadcast_to(gx[None, :], (mh, mw)))
        self.grid_y = np.ascontiguousarray(np.broadcast_to(gy[:, None], (mh, mw)))
        self._idx_img = np.zeros((mh, mw), np.int32)
        # per-triangle coefficient rows (row 0: outside every triangle, the identity map)
        self._coef = np.empty((len(self.tri) + 1, 6), np.float32)
        self._coef[0] = (1, 0, 0, 0, 1, 0)
        # mouth: the reference's own interior when it shows one, else synthesised
        self.ref_opening = float(measures.mouth_opening(lm)[0])
        self.synth_mouth = self.ref_opening < self.s.open_ref_mouth
        self.mouth = MouthModel.from_reference(self.ref_crop, ref_w)
        self.eyelids = EyelidModel(self.ref_crop, ref_w)
        # paste-back
        self.full_crop = (g.x0 == 0 and g.y0 == 0 and g.x1 == W and g.y1 == H)
        touches = (g.x0 == 0, g.y0 == 0, g.x1 == W, g.y1 == H)
        self.mask = None
        self.feather_px = 0
        if g.scale != 1.0 and not self.full_crop:
            self.feather_px = max(1, int(self.s.feather * max(g.x1 - g.x0, g.y1 - g.y0)))
            self.mask = feather_mask(g.x1 - g.x0, g.y1 - g.y0, self.feather_px, touches)
        self._ready = True
        logger.debug("prepared %dx%d reference: box %s, work %dx%d, %d vertices, %d triangles",
                     W, H, (g.x0, g.y0, g.x1, g.y1), ww, wh, len(self.ref_pts), len(self.tri))

    # ------------------------------------------------------------ render
    def target_points(self, target_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target mesh vertices (n, 2) in working pixels and their depth (n,)."""
        tl = np.asarray(target_landmarks, np.float64)
        tw = (tl[:, :2] - [self.geom.x0, self.geom.y0]) * self.geom.scale
        rig = self._rigid_rows
        sim = _similarity_2d(self.ref_pts[rig], tw[self.mesh_idx[rig]])
        moved = self.ring_ref @ sim[:, :2].T + sim[:, 2]
        ring = self.ring_ref + self.ring_follow[:, None] * (moved - self.ring_ref)
        pts = np.concatenate([tw[self.mesh_idx], ring, self.border])
        z = np.concatenate([tl[self.mesh_idx, 2], np.full(len(ring) + len(self.border), 1e9)])
        return pts, z

    def warp_maps(self, target_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense backward maps (working size) target pixel -> reference-crop pixel."""
        import cv2

        pts, z = self.target_points(target_landmarks)
        tgt_tri = pts[self.tri]                                           # (n_tri, 3, 2)
        coef = self._coef                                                 # one row per triangle (+ identity)
        coef[1:] = _affines(tgt_tri, self.ref_tri)
        order = np.argsort(-z[self.tri].mean(1), kind="stable")           # far first
        img = self._idx_img
        img.fill(0)
        sh = 4
        scale = np.array([1.0 / self.map_sx, 1.0 / self.map_sy]) * (1 << sh)
        # map-grid pixel (i) centre is at work coordinate (i + .5) * s - .5
        tri_px = np.round(((tgt_tri + 0.5) * scale) - 0.5 * (1 << sh)).astype(np.int32)
        fill = cv2.fillConvexPoly
        # the loop is a few hundred C calls: lists instead of per-iteration numpy indexing
        for poly, label in zip(list(tri_px[order]), (order + 1).tolist()):
            fill(img, poly, label, cv2.LINE_8, sh)
        g = np.take(coef, img, axis=0)                                    # (mh, mw, 6): one gather
        gx, gy = self.grid_x, self.grid_y
        mx = g[..., 0] * gx; mx += g[..., 1] * gy; mx += g[..., 2]        # same sums, same order,
        my = g[..., 3] * gx; my += g[..., 4] * gy; my += g[..., 5]        # fewer temporaries
        ww, wh = self.geom.size
        if (mx.shape[1], mx.shape[0]) != (ww, wh):
            mx = cv2.resize(mx, (ww, wh), interpolation=cv2.INTER_LINEAR)
            my = cv2.resize(my, (ww, wh), interpolation=cv2.INTER_LINEAR)
        return mx, my

    def render_crop(self, target_landmarks: np.ndarray) -> np.ndarray:
        """The working-resolution head crop for one target (no paste-back)."""
        import cv2

        if not self._ready:
            raise RuntimeError("call prepare() first")
        tl = np.asarray(target_landmarks, np.float32)
        if tl.shape != (478, 3):
            raise ValueError(f"target landmarks must be (478, 3), got {tl.shape}")
        mx, my = self.warp_maps(tl)
        # fixed-point maps: remap's fast path (1/32 px precision), cheaper than float maps
        m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        out = cv2.remap(self.ref_crop, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        tw = self.geom.to_work(tl)
        iod = float(measures.inter_ocular(tw)[0])
        if self.synth_mouth:
            opening = float(measures.mouth_opening(tl)[0])
            if opening > 0.015:
                self.mouth.draw(out, tw, iod, opening)
        if self.s.eyelids:
            self.eyelids.draw(out, tw, iod)
        return out

    def render(self, target_landmarks: np.ndarray) -> np.ndarray:
        crop = self.render_crop(target_landmarks)
        if self.full_crop and self.geom.scale == 1.0:
            return crop
        return paste_back(self.reference, crop, self.geom, self.mask, feather=self.feather_px)
