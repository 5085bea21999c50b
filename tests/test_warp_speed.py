"""Speed round 3: the faster paths compute what the straightforward ones did.

- render.warp.delaunay (cv2.Subdiv2D) gives scipy.spatial.Delaunay's triangles on the real
  mesh of a tracked face (and on jittered copies of it);
- warp_maps (one gather, in-place sums) equals the per-coefficient reference computation
  bit for bit, and frames rendered on scipy's triangle order differ only on a few shared
  triangle edges (ties in the far-first fill order);
- motion.space's closed-form Euler angles equal scipy's Rotation "YXZ" both ways;
- a warm render imports no scipy at all.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from echo_cli.render.warp import MeshWarpRenderer, delaunay


@pytest.fixture(scope="module")
def clip(shared_data):
    """First 30 frames of a real speech clip and their MediaPipe track."""
    from echo_cli.media.video_io import iter_frames
    from echo_cli.preprocess.face import track_face

    frames = np.stack(list(iter_frames(shared_data / "clips" / "d12.mp4", fps=25, max_frames=30)))
    return frames, track_face(frames, fps=25.0).landmarks.astype(np.float32)


@pytest.fixture(scope="module")
def renderer(clip):
    frames, lms = clip
    r = MeshWarpRenderer()
    r.prepare(frames[0], lms[0])
    return r


def _scipy_triangles(pts: np.ndarray) -> np.ndarray:
    from scipy.spatial import Delaunay

    tri = Delaunay(pts).simplices
    p = pts[tri]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) * 0.5
    return tri[area > 1e-4]


def _as_set(tri: np.ndarray) -> set:
    return {tuple(sorted(t)) for t in np.asarray(tri).tolist()}


def test_delaunay_matches_scipy_on_the_face_mesh(renderer):
    assert _as_set(renderer.tri) == _as_set(_scipy_triangles(renderer.ref_pts))
    rng = np.random.default_rng(0)
    n_moving = len(renderer.ref_pts) - len(renderer.border)
    for _ in range(25):
        pts = renderer.ref_pts.copy()
        pts[:n_moving] += rng.normal(0, 3.0, (n_moving, 2))
        assert _as_set(delaunay(pts)) == _as_set(_scipy_triangles(pts))


def test_face_mesh_needs_no_scipy_fallback(renderer, monkeypatch):
    """The renderer's meshes (hull = the fixed box frame) are triangulated by Subdiv2D alone."""
    import scipy.spatial

    monkeypatch.setattr(scipy.spatial, "Delaunay", None)         # a fallback would fail here
    assert _as_set(delaunay(renderer.ref_pts)) == _as_set(renderer.tri)


def test_delaunay_general_point_sets():
    """Random clouds: Subdiv2D can miss thin hull triangles; the area check falls back."""
    rng = np.random.default_rng(5)
    for off in (-300.0, 0.0, 5000.0):
        pts = rng.uniform(0, 900, (250, 2)) + off
        assert _as_set(delaunay(pts)) == _as_set(_scipy_triangles(pts))
    assert delaunay(np.array([[0.0, 0.0], [1.0, 1.0]])).shape == (0, 3)


def test_delaunay_duplicate_and_collinear_points():
    square = np.array([[0, 0], [10, 0], [20, 0], [0, 10], [20, 10], [10, 5], [10, 5]], float)
    tri = delaunay(square)
    assert 6 not in tri                                   # the duplicate joins no triangle
    assert _as_set(tri) == _as_set(_scipy_triangles(square[:6]))


def _reference_maps(r: MeshWarpRenderer, target: np.ndarray):
    """warp_maps as first written: six separate gathers, broadcast arithmetic."""
    import cv2

    from echo_cli.render.warp import _affines

    pts, z = r.target_points(target)
    tgt_tri = pts[r.tri]
    coef = np.empty((6, len(r.tri) + 1), np.float32)
    coef[:, 0] = (1, 0, 0, 0, 1, 0)
    coef[:, 1:] = _affines(tgt_tri, r.ref_tri).T
    order = np.argsort(-z[r.tri].mean(1), kind="stable")
    img = np.zeros_like(r._idx_img)
    scale = np.array([1.0 / r.map_sx, 1.0 / r.map_sy]) * 16
    tri_px = np.round(((tgt_tri + 0.5) * scale) - 8).astype(np.int32)
    for i in order:
        cv2.fillConvexPoly(img, tri_px[i], int(i) + 1, cv2.LINE_8, 4)
    g = [np.take(c, img) for c in coef]
    mx = g[0] * r.grid_x + g[1] * r.grid_y + g[2]
    my = g[3] * r.grid_x + g[4] * r.grid_y + g[5]
    ww, wh = r.geom.size
    if (mx.shape[1], mx.shape[0]) != (ww, wh):
        mx = cv2.resize(mx, (ww, wh), interpolation=cv2.INTER_LINEAR)
        my = cv2.resize(my, (ww, wh), interpolation=cv2.INTER_LINEAR)
    return mx, my


def test_warp_maps_equal_the_reference_computation(clip, renderer):
    _, lms = clip
    for t in lms[::7]:
        mx, my = renderer.warp_maps(t)
        rx, ry = _reference_maps(renderer, t)
        np.testing.assert_array_equal(mx, rx)
        np.testing.assert_array_equal(my, ry)


def test_frames_on_scipy_triangle_order_are_the_same_picture(clip):
    """The old renderer used scipy's simplex order; only shared edges of equal-depth (far)
    triangles can change owner, so a handful of pixels differ, by little on average."""
    frames, lms = clip
    new = MeshWarpRenderer()
    new.prepare(frames[0], lms[0])
    old = MeshWarpRenderer()
    old.prepare(frames[0], lms[0])
    old.tri = _scipy_triangles(old.ref_pts).astype(np.int64)
    old.ref_tri = old.ref_pts[old.tri]
    for t in lms[::5]:
        a, b = new.render(t).astype(int), old.render(t).astype(int)
        d = np.abs(a - b)
        assert d.mean() < 0.02
        assert (d > 0).any(2).mean() < 0.01               # < 1 % of the pixels (0.65 % measured)
        assert np.percentile(d, 99.9) <= 2


def test_euler_closed_form_matches_scipy():
    from scipy.spatial.transform import Rotation

    from echo_cli.motion.space import euler_from_matrix, matrix_from_euler

    rot = Rotation.random(500, random_state=3).as_matrix()
    np.testing.assert_allclose(euler_from_matrix(rot), Rotation.from_matrix(rot).as_euler("YXZ"), atol=1e-10)
    rng = np.random.default_rng(1)
    e = np.stack([rng.uniform(-np.pi, np.pi, 500), rng.uniform(-1.5, 1.5, 500), rng.uniform(-np.pi, np.pi, 500)], 1)
    np.testing.assert_allclose(matrix_from_euler(e), Rotation.from_euler("YXZ", e).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(euler_from_matrix(matrix_from_euler(e)), e, atol=1e-9)
    # gimbal lock: roll 0, yaw absorbs it, as scipy does
    lock = matrix_from_euler(np.array([[0.3, np.pi / 2, 0.2], [0.3, -np.pi / 2, -0.4]]))
    got = euler_from_matrix(lock)
    np.testing.assert_allclose(matrix_from_euler(got), lock, atol=1e-7)
    assert np.all(got[:, 2] == 0.0)


def test_render_modules_do_not_import_scipy():
    code = ("import sys, numpy as np\n"
            "from echo_cli.render.warp import MeshWarpRenderer\n"
            "from echo_cli.motion.space import euler_from_matrix, matrix_from_euler\n"
            "euler_from_matrix(matrix_from_euler(np.zeros((1, 3))))\n"
            "print(any(m == 'scipy' or m.startswith('scipy.') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
