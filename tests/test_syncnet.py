"""The lip-sync scorer: pure feature code, checkpoint round trip, and the shipped scorer's
behaviour on speakers held out from its training (real MediaPipe on real clips)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from echo_cli.errors import ModelError
from echo_cli.eval import syncnet as S


def test_resample_series_keeps_time():
    x = np.arange(30, dtype=float)                  # 1 s at 30 fps, value = frame index
    y = S.resample_series(x, 30.0, 25.0)
    assert len(y) == 25
    np.testing.assert_allclose(y, np.arange(25) * 30 / 25)
    assert S.resample_series(x, 25.0, 25.0) is not None and len(S.resample_series(x, 25.0, 25.0)) == 30


def test_lip_features_invariant_to_head_placement():
    rng = np.random.default_rng(0)
    L = rng.normal(200, 40, size=(20, 478, 3))
    L[:, 33, :2], L[:, 263, :2] = (150, 180), (250, 180)
    th = 0.3
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    M2 = L.copy()
    M2[..., :2] = 2.0 * L[..., :2] @ R.T + 31.0
    np.testing.assert_allclose(S.lip_features(L), S.lip_features(M2), atol=1e-4)


def test_audio_mel_shape_and_normalisation():
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.5)).astype(np.float32)
    mel = S.audio_mel(wave, 25, 40)
    assert mel.shape == (100, 40)
    assert np.isfinite(mel).all()
    np.testing.assert_allclose(mel.mean(0), 0, atol=1e-3)
    # the tone starts at 0.5 s = mel step 50: energy jumps there
    assert mel[55:, 3:8].mean() > mel[:45, 3:8].mean() + 1.0


def test_checkpoint_round_trip_and_damage(tmp_path):
    torch = pytest.importorskip("torch")
    cfg = S.SyncNetConfig(hidden=16, embed=8)
    model = S._build(cfg)
    S.save(model, cfg, {"note": "test"}, tmp_path / "sn")
    sc = S.load_scorer(tmp_path / "sn")
    lips = np.random.default_rng(1).normal(size=(40, 2 * cfg.n_points)).astype(np.float32)
    mel = np.random.default_rng(2).normal(size=(160, cfg.n_mels)).astype(np.float32)
    with torch.no_grad():
        model.eval()
        v0 = model.video(torch.from_numpy(lips[:5][None])).numpy()
    v1, _ = sc.embed(lips, mel, np.array([0]))
    np.testing.assert_allclose(v0[0], v1[0], atol=1e-5)
    s = sc.score_prepared(lips, mel, max_lag=5)
    assert len(s.curve) == 11 and math.isfinite(s.distance) and s.confidence >= 0
    doc = json.loads((tmp_path / "sn.json").read_text())
    assert doc["format"] == S.FORMAT and doc["schema"] == S.SCHEMA_VERSION
    (tmp_path / "bad.json").write_text((tmp_path / "sn.json").read_text())
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError):
        S.load_scorer(tmp_path / "bad")
    with pytest.raises(ModelError):
        S.load_scorer(tmp_path / "missing")


# ---------------------------------------------------------------------------------------
# The shipped scorer on held-out speakers
# ---------------------------------------------------------------------------------------

SECONDS = 8.0


@pytest.fixture(scope="module")
def heldout():
    root = S.shared_data()
    if root is None:
        pytest.skip("../shared/data is absent (set ECHO_SHARED_DATA)")
    if not (S.CHECKPOINT_DIR / "syncnet.safetensors").is_file():
        pytest.skip("the sync scorer checkpoint is not shipped in this tree")
    from echo_cli.eval.measure import measure_video
    names = ("mt_German_20s.mp4", "sty_reagan_clip1.mp4")
    assert all(n in S.HELDOUT for n in names)
    return [measure_video(root / "talking" / n, max_seconds=SECONDS) for n in names]


def test_shipped_scorer_was_not_trained_on_heldout():
    doc = json.loads((S.CHECKPOINT_DIR / "syncnet.json").read_text()) if \
        (S.CHECKPOINT_DIR / "syncnet.json").is_file() else pytest.skip("no shipped scorer")
    assert not set(doc["train_clips"]) & set(S.HELDOUT)
    assert doc["validation_4s"]["real_beats_mismatched"] >= 0.9


def test_real_audio_scores_above_mismatched(heldout):
    sc = S.load_scorer()
    a, b = heldout
    for m, other in ((a, b), (b, a)):
        real = sc.score(m.landmarks, m.fps, m.wave)
        n = len(m.wave)
        fake = sc.score(m.landmarks, m.fps, np.resize(other.wave, n))
        assert real.confidence > fake.confidence, (m.path, real.confidence, fake.confidence)
        assert real.dist_at_zero < fake.dist_at_zero
        assert abs(real.lag) <= 1.5, (m.path, real.lag)


@pytest.mark.parametrize("k", [3, -2])
def test_injected_shift_is_found_within_one_frame(heldout, k):
    from echo_cli.eval.baselines import shifted
    sc = S.load_scorer()
    m = heldout[0]                          # 25 fps: lags in scorer frames = video frames
    base = sc.score(m.landmarks, m.fps, m.wave).lag
    s = sc.score(shifted(m, k).landmarks, m.fps, m.wave)
    assert abs(s.lag * m.fps / S.FPS - k) <= 1.0, (s.lag, k)
    assert abs((s.lag - base) - k) <= 1.0
