"""Whisper's middle layers in plain torch (features/whisper_layers.py), read from the packaged
CTranslate2 model: the same network as CTranslate2's encoder on real speech, the "mid"
features through the audio pipeline and its cache format, and the checks that keep a model
from reading the wrong layer set."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.errors import DependencyError, InputError


@pytest.fixture(scope="module")
def speech(shared_data):
    from echo_cli.media.audio_io import load_audio

    return load_audio(shared_data / "audio" / "RD_Radio31_000.wav", duration=6.0)


def test_torch_encoder_is_ctranslate2s_encoder(speech):
    from echo_cli.features.audio import load_whisper_model, whisper_model_dir
    from echo_cli.features.whisper_layers import WhisperEncoder, read_encoder_tensors

    model = load_whisper_model()
    mel = model.feature_extractor(speech, padding=480000 - len(speech) + 160)[:, :3000].astype(np.float32)
    ref = np.asarray(model.encode(np.ascontiguousarray(mel[None])), np.float32)[0]         # (1500, 512)
    tensors = read_encoder_tensors(whisper_model_dir() / "model.bin")
    assert not any(k.startswith("decoder") for k in tensors)
    enc = WhisperEncoder(tensors, depth=6)
    hidden = enc(mel)
    assert len(hidden) == 7 and all(h.shape == (1500, 512) for h in hidden)
    ours = enc.final(mel)
    # CTranslate2 runs the encoder in int8: equal up to quantisation, not to the bit
    r = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    assert r > 0.99, r
    # a wrong network (a block skipped) is far from it
    skipped = WhisperEncoder(tensors, depth=5)
    assert np.corrcoef(skipped(mel)[-1].ravel(), hidden[-1].ravel())[0, 1] < r


def test_mid_features_through_the_audio_pipeline(speech, tmp_path):
    from echo_cli.features.audio import audio_features, load_audio_features, save_audio_features
    from echo_cli.model.audio_encoder import audio_matrix

    mid = audio_features(speech, 25.0, whisper=True, whisper_layers="mid")
    assert mid.whisper_layers == "mid" and mid.whisper.shape == (mid.n_frames, 1024)
    assert np.isfinite(mid.whisper).all() and mid.whisper.std() > 0.1
    p = tmp_path / "a.npz"
    save_audio_features(mid, p)
    back = load_audio_features(p)
    assert back.whisper_layers == "mid"
    np.testing.assert_array_equal(back.whisper, mid.whisper)
    assert audio_matrix(back, "whisper_mid").shape == (mid.n_frames, 1024)
    with pytest.raises(InputError, match="layers"):          # a last-layer model refuses mid features
        audio_matrix(back, "whisper")
    final = audio_features(speech, 25.0, whisper=True)
    with pytest.raises(InputError, match="layers"):
        audio_matrix(final, "whisper_mid")
    # the middle layers are not the last one
    a, b = mid.whisper[:, :512], final.whisper
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.9


def test_unreadable_model_file_is_a_clear_error(tmp_path):
    from echo_cli.features.whisper_layers import read_encoder_tensors

    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x06\x00\x00\x00\x05\x00Nope\x00" + b"\x00" * 7)
    with pytest.raises(DependencyError, match="not a Whisper model"):
        read_encoder_tensors(bad)
    bad.write_bytes(b"\x06\x00")
    with pytest.raises(DependencyError, match="cannot read"):
        read_encoder_tensors(bad)
