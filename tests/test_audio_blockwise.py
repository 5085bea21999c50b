"""Block-wise audio features (constant memory for any length) equal the previous
whole-track computation, on real speech with the real Whisper-base encoder.

The reference functions below are the whole-array implementations that
echo_cli.features.audio used before it went block-wise (kept verbatim as the oracle)."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.features import audio as A
from echo_cli.schema import SAMPLE_RATE


def _ref_windows(wave, centres_s, length):
    half = length // 2
    padded = np.pad(wave, (half, length))
    starts = np.round(centres_s * SAMPLE_RATE).astype(np.int64)
    idx = starts[:, None] + np.arange(length)[None, :]
    idx = np.clip(idx, 0, padded.shape[0] - 1)
    return padded[idx]


def _ref_log_mel(wave, centres_s):
    win = _ref_windows(wave, centres_s, A.N_FFT) * np.hanning(A.N_FFT + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(win, n=A.N_FFT, axis=1)) ** 2
    mel = power @ A._mel_filters().T
    return np.log10(np.maximum(mel, 1e-10)).astype(np.float32)


def _ref_energy_db(wave, centres_s, fps):
    length = max(int(round(SAMPLE_RATE / fps)), 16)
    win = _ref_windows(wave, centres_s, length)
    rms = np.sqrt(np.mean(win.astype(np.float64) ** 2, axis=1))
    return np.maximum(20.0 * np.log10(rms + 1e-10), -100.0).astype(np.float32)


def _ref_whisper(wave, centres_s, model):
    fe = model.feature_extractor
    win = A.WHISPER_WINDOW_S * SAMPLE_RATE
    n_win = max(1, int(np.ceil(len(wave) / win)))
    n_mel = fe.nb_max_frames
    enc = []
    for k in range(n_win):
        piece = wave[k * win:(k + 1) * win]
        m = fe(piece, padding=win - len(piece) + 160 if len(piece) < win else 160)[:, :n_mel]
        if m.shape[1] < n_mel:
            m = np.pad(m, ((0, 0), (0, n_mel - m.shape[1])), constant_values=float(m.min()))
        enc.append(np.asarray(model.encode(np.ascontiguousarray(m[None]).astype(np.float32)), np.float32)[0])
    enc_all = np.concatenate(enc, axis=0)
    t_enc = (np.arange(enc_all.shape[0]) + 0.5) / A.WHISPER_HZ
    t = np.clip(centres_s, t_enc[0], t_enc[-1])
    j = np.clip(np.searchsorted(t_enc, t) - 1, 0, len(t_enc) - 2)
    w = ((t - t_enc[j]) / (t_enc[j + 1] - t_enc[j]))[:, None].astype(np.float32)
    return ((1 - w) * enc_all[j] + w * enc_all[j + 1]).astype(np.float32)


@pytest.fixture(scope="module")
def long_speech(shared_data):
    """All four radio clips back to back (real speech, about 70 s: three Whisper windows)."""
    names = ["RD_Radio31_000.wav", "RD_Radio34_002.wav", "RD_Radio36_000.wav", "RD_Radio40_000.wav"]
    w = np.concatenate([A.read_audio(shared_data / "audio" / n) for n in names])
    return w if len(w) > 61 * SAMPLE_RATE else np.concatenate([w, w])


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_mel_and_energy_blockwise_equal_whole_track(long_speech, fps):
    n = A.n_frames_for(len(long_speech) / SAMPLE_RATE, fps) + 7     # a few frames past the end too
    c = A.frame_centres(n, fps)
    mel_ref, en_ref = _ref_log_mel(long_speech, c), _ref_energy_db(long_speech, c, fps)
    for block in (1, 97, A.BLOCK_FRAMES, 10 ** 6):                   # odd sizes cross every seam
        np.testing.assert_allclose(A.log_mel(long_speech, c, block=block), mel_ref, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(A.energy_db(long_speech, c, fps, block=block), en_ref)
    assert A.log_mel(long_speech, c).dtype == np.float32 and A.energy_db(long_speech, c, fps).dtype == np.float32


def test_whisper_streamed_windows_equal_whole_concatenation(long_speech):
    if not A.whisper_available():
        pytest.skip("Whisper base model not installed")
    model = A.load_whisper_model()
    for fps in (25.0, 30.0):
        c = A.frame_centres(A.n_frames_for(len(long_speech) / SAMPLE_RATE, fps) + 3, fps)
        got = A.whisper_encoder_features(long_speech, c, model)
        ref = _ref_whisper(long_speech, c, model)
        assert got.shape == ref.shape == (len(c), A.WHISPER_DIM) and got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)


def test_short_track_windows_and_empty_block(long_speech):
    w = long_speech[:300]                            # shorter than one mel window
    c = A.frame_centres(3, 25.0)
    np.testing.assert_allclose(A.log_mel(w, c), _ref_log_mel(w, c), atol=1e-5)
    assert A._windows(w, c[:0], 400).shape == (0, 400)


@pytest.mark.parametrize("pad", [412, 12, 511])        # < 64 pad: faster-whisper zeroes real samples too
def test_vad_batches_equal_faster_whisper(long_speech, pad):
    """Silero probabilities and spans equal faster-whisper's whole-track call; the track
    (about 6 min of real speech) spans more than one 10000-hop ONNX batch."""
    from faster_whisper.vad import get_speech_timestamps, get_vad_model

    w = np.tile(long_speech, 6)
    w = w[: (len(w) // 512 - 1) * 512 + (512 - pad)]          # faster-whisper pads 512 - len % 512
    model = get_vad_model()
    padded = np.pad(w, (0, 512 - w.shape[0] % 512))
    ref_probs = np.asarray(model(padded), np.float32).reshape(-1)
    got = A.silero_probs(w, model)
    assert len(w) > A.VAD_BATCH * 512
    np.testing.assert_array_equal(got, ref_probs)
    ref = get_speech_timestamps(w, A.vad_options(), sampling_rate=SAMPLE_RATE)
    assert A.speech_spans(got, len(w), A.vad_options()) == ref and len(ref) > 10
