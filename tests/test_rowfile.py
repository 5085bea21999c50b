"""The avatar's audio matrix read per chunk from a temporary file (generate.rowfile, what
api.animate now gives the engine) gives exactly what the previous in-memory array gave:
row for row, and through the generate engine with the trained default checkpoint on real
speech from ../shared/data with the real Whisper-base encoder features."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.api.animate import _fit_rows, release_features
from echo_cli.config import RenderSettings
from echo_cli.generate.engine import _slicer, generate_all
from echo_cli.generate.rowfile import RowFile


@pytest.fixture(scope="module")
def speech_wave(shared_data):
    from echo_cli.media.audio_io import load_audio

    return load_audio(shared_data / "audio" / "RD_Radio31_000.wav", duration=8.0)


@pytest.fixture(scope="module")
def speech_features(speech_wave):
    from echo_cli.features.audio import audio_features

    return audio_features(speech_wave, 25.0, whisper=True)


@pytest.fixture(scope="module")
def mid_features(speech_wave):
    from echo_cli.features.audio import audio_features

    return audio_features(speech_wave, 25.0, whisper=True, whisper_layers="mid")


def test_rows_equal_the_array_path(tmp_path):
    x = np.random.default_rng(0).standard_normal((301, 7)).astype(np.float32)
    for n in (301, 250, 345):                       # same length, trimmed, extended by the last row
        ref = _fit_rows(x, n)
        with RowFile.from_array(x, n, folder=tmp_path) as rows:
            assert rows.shape == ref.shape
            arr = _slicer(ref, "audio", None)
            for a, b in ((0, n), (0, 64), (37, 101), (n - 5, n + 9), (-4, 3), (n + 2, n + 6), (5, 5)):
                np.testing.assert_array_equal(rows(a, b), arr(a, b))
        assert not list(tmp_path.iterdir())         # anonymous file: nothing left in the folder


def test_closed_rowfile_refuses_reads(tmp_path):
    rows = RowFile.from_array(np.ones((4, 2), np.float32), folder=tmp_path)
    rows.close()
    with pytest.raises(ValueError):
        rows(0, 2)


def test_release_features_keeps_notes():
    pre = {"avatar_audio": {"audio": np.zeros((10, 80)), "transcript": "t", "notes": ["n"]},
           "user_video": {"face": object(), "audio": object(), "notes": []}, "transcript_file": "x"}
    release_features(pre)
    assert pre["avatar_audio"] == {"audio": None, "transcript": "t", "notes": ["n"]}
    assert pre["user_video"] == {"face": None, "audio": None, "notes": []}
    assert pre["transcript_file"] == "x"


@pytest.mark.parametrize("extra", [0, 23])           # the video as long as the audio, and longer
def test_engine_output_identical_on_real_speech(speech_features, mid_features, extra, tmp_path):
    from echo_cli.api.animate import load_bundle
    from echo_cli.model.audio_encoder import audio_matrix
    from echo_cli.api.render import default_checkpoint

    bundle = load_bundle(default_checkpoint())
    gen = bundle.generator
    feats = mid_features if gen.cfg.audio_input == "whisper_mid" else speech_features
    mat = audio_matrix(feats, gen.cfg.audio_input)
    n = mat.shape[0] + extra
    identity = np.zeros(gen.cfg.motion_dim, np.float32)
    s = RenderSettings(chunk_frames=64, t_prev=8, overlap=4, steps=2)
    a = generate_all(gen, dict(audio=_fit_rows(mat, n), identity=identity, n_frames=n), s, seed=5)
    with RowFile.from_array(mat, n, folder=tmp_path) as rows:
        b = generate_all(gen, dict(audio=rows, identity=identity, n_frames=n), s, seed=5)
    assert a.shape == b.shape == (n, gen.cfg.motion_dim)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layers", ["final", "mid"])
def test_spilled_whisper_rows_equal_the_fitted_matrix(speech_features, mid_features, layers):
    """render() spills the avatar's Whisper features right after preprocessing (T rows);
    animate reads n_frames rows from them: the same as the fitted in-memory matrix."""
    import dataclasses

    from echo_cli.api.animate import _spilled_audio, spill_avatar_whisper
    from echo_cli.model.audio_encoder import audio_matrix

    feats = dataclasses.replace(speech_features if layers == "final" else mid_features)
    pre = {"avatar_audio": {"audio": feats, "notes": []}}
    spill_avatar_whisper(pre)
    entry = pre["avatar_audio"]
    assert entry["audio"].whisper is None and entry["audio"].mel is feats.mel
    assert entry["audio"].whisper_layers == layers
    rows = entry["whisper_rows"]
    try:
        T = feats.whisper.shape[0]
        for kind in (("whisper", "whisper+mel") if layers == "final" else ("whisper_mid",)):
            audio = _spilled_audio(rows, entry["audio"], kind)
            for n in (T, T - 30, T + 23):
                ref = _fit_rows(audio_matrix(feats, kind), n)
                for a, b in ((0, n), (0, 64), (n - 40, n), (17, 17)):
                    np.testing.assert_array_equal(audio(a, b), ref[a:b])
    finally:
        rows.close()


def test_quiet_gate_replaces_quiet_frames_for_arrays_and_row_callables():
    from echo_cli.model.audio_encoder import gate_quiet, quiet_frames

    rows = np.arange(24, dtype=np.float32).reshape(6, 4)
    quiet = np.array([0, 1, 1, 0, 0, 1], bool)
    fill = np.full(4, -1.0, np.float32)
    g = gate_quiet(rows, quiet, fill)
    assert (g[quiet] == -1).all() and (g[~quiet] == rows[~quiet]).all()
    assert rows[1, 0] == 4                                  # the input is not modified
    seen = gate_quiet(lambda a, b: rows[np.clip(np.arange(a, b), 0, 5)], quiet, fill)
    np.testing.assert_array_equal(seen(2, 8), np.concatenate([g[2:], g[5:6], g[5:6]]))   # past the end: last value
    assert gate_quiet(rows, np.zeros(0, bool), fill) is rows
    energy = np.full(20, -100.0)
    energy[10] = -30.0                                      # one frame of sound in digital silence
    q = quiet_frames(energy, before=3, after=1)
    assert not q[7:12].any() and q[:7].all() and q[12:].all()   # 3 frames before, 1 after keep their features
    assert not quiet_frames(np.full(5, -59.0)).any()            # a recorded pause is not digital silence
