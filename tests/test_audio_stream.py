"""Streamed audio (iter_audio / count_samples / write_mix): the render's output track is
never held whole, and equals the whole-array mix it replaced, on real speech."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.errors import InputError
from echo_cli.media.audio_io import count_samples, iter_audio, load_audio, mix, write_mix

HEADER = 44        # bytes of the float32 WAV header write_mix writes


def _read_f32_wav(path):
    return np.fromfile(path, "<f4", offset=HEADER)


@pytest.fixture(scope="module")
def pair(shared_data):
    return shared_data / "audio" / "RD_Radio31_000.wav", shared_data / "audio" / "RD_Radio36_000.wav"


def _whole_decode(path, start=0.0, duration=None):
    """The previous load_audio: one ffmpeg run, all bytes at once (the oracle)."""
    from echo_cli.media import ffmpeg as ff

    args = ff.base_args() + (["-ss", f"{start:.6f}"] if start else []) + ["-i", str(path)] \
        + (["-t", f"{duration:.6f}"] if duration is not None else []) \
        + ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", "16000", "-f", "f32le", "pipe:1"]
    return np.clip(np.frombuffer(ff.run(args, what="decode"), np.float32), -1, 1)


def test_load_audio_equals_whole_decode(shared_data, pair):
    for p in (*pair, shared_data / "clips" / "d6.mp4"):            # wav and an mp4's AAC track
        got = load_audio(p)
        np.testing.assert_array_equal(got, _whole_decode(p))
        assert got.dtype == np.float32 and got.flags.owndata
    np.testing.assert_array_equal(load_audio(pair[0], start=1.5, duration=2.0), _whole_decode(pair[0], 1.5, 2.0))


def test_iter_audio_blocks_equal_whole_decode(pair):
    whole = load_audio(pair[0])
    blocks = list(iter_audio(pair[0], block=10007))
    assert all(b.size == 10007 for b in blocks[:-1]) and 0 < blocks[-1].size <= 10007
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert count_samples(pair[0]) == whole.size


@pytest.mark.parametrize("gains", [None, [3.0, 3.0]])        # the second clips: rescaled by the peak
def test_write_mix_equals_whole_mix(pair, tmp_path, gains):
    waves = [load_audio(p) for p in pair]
    ref = mix(waves, gains)
    n = write_mix(list(pair), tmp_path / "m.wav", gains=gains, block=10007)
    assert n == max(w.size for w in waves) == ref.size
    np.testing.assert_array_equal(_read_f32_wav(tmp_path / "m.wav"), ref)
    # ffmpeg reads it back (float32 WAV) with the same samples and length
    np.testing.assert_array_equal(load_audio(tmp_path / "m.wav"), np.clip(ref, -1, 1))


def test_write_mix_pads_and_trims_to_the_timeline(pair, tmp_path):
    w = load_audio(pair[0])
    n = write_mix([pair[0]], tmp_path / "long.wav", n_samples=w.size + 12345, block=4096)
    got = _read_f32_wav(tmp_path / "long.wav")
    assert n == got.size == w.size + 12345
    np.testing.assert_array_equal(got[: w.size], w)
    assert not got[w.size:].any()
    n = write_mix([pair[0]], tmp_path / "short.wav", n_samples=1000, block=333)
    np.testing.assert_array_equal(_read_f32_wav(tmp_path / "short.wav"), w[:1000])
    assert count_samples(tmp_path / "short.wav") == 1000


def test_stream_of_a_file_without_audio_is_an_input_error(shared_data):
    with pytest.raises(InputError):
        list(iter_audio(shared_data / "portraits" / "d12.jpg"))
