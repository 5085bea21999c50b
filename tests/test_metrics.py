"""Pure metric functions: invariants on synthetic arrays (fast, no media)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from echo_cli.eval import metrics as M


def _face(T=60, seed=0, open_amp=0.0):
    """A synthetic 478-point 'face': random fixed shape, lips opened by open_amp * sin."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 30, size=(478, 3)) + 200
    base[M.LEFT_EYE_OUTER, :2] = (150, 180)
    base[M.RIGHT_EYE_OUTER, :2] = (250, 180)
    base[M.UPPER_INNER_LIP, :2] = (200, 270)
    base[M.LOWER_INNER_LIP, :2] = (200, 272)
    L = np.repeat(base[None], T, 0)
    gap = open_amp * (1 + np.sin(np.arange(T) / 3.0))
    L[:, M.LOWER_INNER_LIP, 1] += gap
    return L


def test_pearson_edge_cases():
    x = np.arange(10.0)
    assert M.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert M.pearson(x, -x) == pytest.approx(-1.0)
    assert math.isnan(M.pearson(x, np.ones(10)))
    assert math.isnan(M.pearson([1.0, 2.0], [1.0, 2.0]))


@pytest.mark.parametrize("k", [-4, 0, 3, 7])
def test_best_lag_finds_injected_shift(k):
    rng = np.random.default_rng(1)
    env = np.convolve(rng.normal(size=400), np.ones(4) / 4, "same")
    late = np.roll(env, k)                    # late[t] = env[t - k]
    r, lag = M.best_lag_correlation(late[10:-10], env[10:-10], max_lag=10)
    assert lag == k
    assert r > 0.95


def test_shift_z_high_for_coupled_low_for_independent():
    rng = np.random.default_rng(2)
    env = np.convolve(rng.normal(size=500), np.ones(5) / 5, "same")
    mouth = env + 0.3 * rng.normal(size=500)
    other = np.convolve(rng.normal(size=500), np.ones(5) / 5, "same")
    assert M.shift_z_score(mouth, env) > 4
    assert M.shift_z_score(other, env) < 3


def test_mouth_opening_scale_free():
    L = _face(open_amp=5.0)
    m1 = M.mouth_opening(L)
    m2 = M.mouth_opening(L * 2.5)
    np.testing.assert_allclose(m1, m2, rtol=1e-9)
    assert m1.max() > m1.min()


def test_similarity_align_recovers_transform():
    rng = np.random.default_rng(3)
    P = rng.normal(size=(30, 2))
    th = 0.4
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    Q = 1.7 * P @ R.T + np.array([3.0, -2.0])
    R2, s, t = M.similarity_align(P, Q)
    np.testing.assert_allclose(s * P @ R2.T + t, Q, atol=1e-9)


def test_lve_zero_for_same_lips_under_head_motion_and_positive_otherwise():
    ref = _face(open_amp=4.0)
    th = 0.2
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    moved = ref.copy()
    moved[..., :2] = 1.3 * ref[..., :2] @ R.T + 17.0
    assert M.lip_vertex_error(moved, ref) == pytest.approx(0.0, abs=1e-9)
    still = np.repeat(ref[:1], len(ref), 0)
    assert M.lip_vertex_error(still, ref) > 0.01


def test_rpcc():
    rng = np.random.default_rng(4)
    partner = rng.normal(size=(200, 3))
    real = partner + rng.normal(size=(200, 3))
    gen_good = partner + rng.normal(size=(200, 3))
    gen_bad = rng.normal(size=(200, 3))
    good = M.rpcc(gen_good, partner, real)
    bad = M.rpcc(gen_bad, partner, real)
    assert good["rpcc"] < bad["rpcc"]
    assert math.isnan(M.rpcc(gen_good, partner)["rpcc"])


def test_sid_and_var():
    rng = np.random.default_rng(5)
    varied = rng.normal(size=(400, 4))
    still = np.zeros((400, 4))
    assert M.sid(still, k=10) == pytest.approx(0.0)
    s = M.sid(varied, k=10)
    assert 2.5 < s <= math.log2(10) + 1e-9
    assert M.motion_variance(still) == 0.0
    assert M.motion_variance(varied) > 0.5
    # a shared codebook: a collapsed system is less diverse than the reference
    assert M.sid(varied[:, :] * 0.01, k=10, reference=varied) < s


def test_mouth_ratio():
    speaking = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    mouth = np.r_[np.full(50, 0.3), np.full(50, 0.05)]
    assert M.mouth_ratio(mouth, speaking) == pytest.approx(0.05 / 0.3)
    assert M.mouth_ratio(np.full(100, 0.2), speaking) == pytest.approx(1.0)
    assert math.isnan(M.mouth_ratio(mouth, np.ones(100, bool)))


def test_mouth_std_ratio():
    rng = np.random.default_rng(3)
    speaking = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    mouth = np.r_[0.2 + 0.1 * rng.standard_normal(100), 0.05 + 0.02 * rng.standard_normal(100)]
    r = M.mouth_std_ratio(mouth, speaking)
    assert 0.1 < r < 0.3                                  # about 0.02 / 0.1
    # the mean does not matter, only the variability
    assert M.mouth_std_ratio(mouth + np.r_[np.zeros(100), np.full(100, 0.3)], speaking) == pytest.approx(r)
    # a mouth closing slowly after the turn is dropped by the margin, not counted as listening
    tail = mouth.copy()
    tail[100:110] = np.linspace(0.4, 0.05, 10)
    assert M.mouth_std_ratio(tail, speaking) > 1.5 * r
    assert M.mouth_std_ratio(tail, speaking, margin=10) == pytest.approx(
        M.mouth_std_ratio(mouth, speaking, margin=10))
    # lips parting ahead of the next turn: counted unless `before` drops them
    sp2 = np.r_[speaking, np.ones(50, bool)]
    m2 = np.r_[mouth, 0.2 + 0.1 * rng.standard_normal(50)]
    pre = m2.copy()
    pre[190:200] = np.linspace(0.05, 0.4, 10)
    assert M.mouth_std_ratio(pre, sp2, margin=10) > 1.5 * M.mouth_std_ratio(m2, sp2, margin=10)
    assert M.mouth_std_ratio(pre, sp2, margin=10, before=10) == pytest.approx(
        M.mouth_std_ratio(m2, sp2, margin=10, before=10))
    # listening restricted to given frames (e.g. the user's turns)
    lis = np.zeros(200, bool); lis[150:] = True
    assert np.isfinite(M.mouth_std_ratio(mouth, speaking, lis))
    assert math.isnan(M.mouth_std_ratio(mouth, np.ones(200, bool)))


def test_reaction_delay():
    fps = 25.0
    a = np.zeros(300) + np.random.default_rng(6).normal(0, 0.01, 300)
    a[110:130] += 1.0          # reacts 10 frames after the event at 100
    a[210:220] += 1.0          # 10 frames after 200
    assert M.reaction_delay(a, [100, 200], fps) == pytest.approx(0.4)
    assert math.isnan(M.reaction_delay(np.zeros(300), [100], fps))


def test_jitter_and_boundary_jitter():
    T = 100
    smooth = _face(T)
    smooth[..., 0] += np.linspace(0, 20, T)[:, None]           # constant velocity: no jitter
    assert M.jitter(smooth) == pytest.approx(0.0, abs=1e-9)
    seamy = smooth.copy()
    for b in (25, 50, 75):                                     # a jump at each chunk seam
        seamy[b:, :, 0] += 3.0
    bj = M.boundary_jitter(seamy, [25, 50, 75])
    assert bj["at"] > 0 and bj["inside"] == pytest.approx(0.0, abs=1e-9)
    noisy = smooth + np.random.default_rng(7).normal(0, 1, smooth.shape)
    bn = M.boundary_jitter(noisy, [25, 50, 75])
    assert 0.5 < bn["ratio"] < 2.0


def test_frozen_and_face_lost():
    assert M.frozen_fraction(np.zeros(10)) == 1.0
    assert M.frozen_fraction(np.full(10, 3.0)) == 0.0
    assert M.frozen_fraction(np.r_[np.zeros(3), np.full(7, 0.4)]) == pytest.approx(0.3)
    assert M.face_lost_fraction([True, True, False, True]) == pytest.approx(0.25)


def test_shape_consistency():
    ref = _face(T=1)[0]
    same = _face(T=10)
    same[..., :2] = same[..., :2] * 0.8 + 5                     # zoom + move: same identity
    other = _face(T=10, seed=9)
    assert M.shape_consistency(same, ref) == pytest.approx(0.0, abs=1e-9)
    assert M.shape_consistency(other, ref) > 0.1


def test_ssim_psnr():
    rng = np.random.default_rng(8)
    a = rng.integers(0, 255, size=(3, 32, 32), dtype=np.uint8)
    same = M.ssim_psnr(a, a)
    assert same["ssim"] == pytest.approx(1.0) and same["psnr"] == 100.0
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    diff = M.ssim_psnr(a, b)
    assert diff["ssim"] < 1.0 and 10 < diff["psnr"] < 40
