"""Long renders keep the decoded track and the avatar's Whisper rows in temporary files
(media.wave_file, generate.rowfile; preprocess option on_disk): the features, the cache
file and the rows the generator reads are exactly those of the in-memory path, on real
speech from ../shared/data with the real Silero VAD and Whisper-base encoder."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.errors import InputError
from echo_cli.features import audio as A
from echo_cli.generate.rowfile import RowFile
from echo_cli.media.audio_io import load_audio
from echo_cli.media.wave_file import WaveFile


@pytest.fixture(scope="module")
def clip(shared_data):
    return shared_data / "talking" / "sty_reagan_clip1.mp4"


def test_wave_file_holds_the_decoded_samples(clip):
    ref = load_audio(clip)
    with WaveFile.decode(clip) as w:
        assert len(w) == w.size == w.shape[0] == ref.size
        np.testing.assert_array_equal(w.read_all(), ref)
        for a, b in ((0, 10), (16000, 48000), (ref.size - 7, ref.size + 50), (-20, ref.size), (9, 9)):
            np.testing.assert_array_equal(w[a:b], ref[a:b])
        with pytest.raises(TypeError):
            w[::2]
    with pytest.raises(ValueError):
        w[0:4]                                   # closed


def test_wave_file_refuses_bad_media(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError):
        WaveFile.decode(bad)


@pytest.mark.parametrize("layers", ["mid", "final"])
def test_on_disk_features_equal_the_in_memory_ones(clip, tmp_path, layers):
    mem = A.audio_features(load_audio(clip), 25.0, whisper=True, whisper_layers=layers)
    with WaveFile.decode(clip) as w:
        disk = A.audio_features(w, 25.0, whisper=True, whisper_layers=layers, whisper_on_disk=True)
    assert isinstance(disk.whisper, RowFile)
    for k in ("mel", "energy", "vad"):
        np.testing.assert_array_equal(getattr(disk, k), getattr(mem, k))
    np.testing.assert_array_equal(disk.whisper(0, len(disk.whisper)), mem.whisper)
    assert disk.duration == mem.duration and disk.whisper_layers == mem.whisper_layers == layers
    # the cache file: written block by block from the RowFile, read back either way
    A.save_audio_features(disk, tmp_path / "disk.npz")
    A.save_audio_features(mem, tmp_path / "mem.npz")
    for name in ("disk.npz", "mem.npz"):
        whole = A.load_audio_features(tmp_path / name)
        np.testing.assert_array_equal(whole.whisper, mem.whisper)
        rows = A.load_audio_features(tmp_path / name, whisper_on_disk=True).whisper
        assert isinstance(rows, RowFile) and rows.shape == mem.whisper.shape
        np.testing.assert_array_equal(rows(17, 93), mem.whisper[17:93])


def test_preprocess_on_disk_matches_and_feeds_the_spill(clip, tmp_path, monkeypatch):
    from echo_cli.api.animate import spill_avatar_whisper
    from echo_cli.preprocess.pipeline import preprocess_media

    monkeypatch.setenv("ECHO_CACHE_DIR", str(tmp_path / "cache"))
    kw = dict(fps=25.0, whisper=True, whisper_layers="mid")
    mem = preprocess_media(clip, cache=False, **kw)["audio"]
    for cached in (False, True):                  # computed into the cache, then read from it
        res = preprocess_media(clip, cache=True, on_disk=True, **kw)
        assert res["cached"]["audio"] is cached
        assert isinstance(res["audio"].whisper, RowFile)
        np.testing.assert_array_equal(res["audio"].whisper(0, mem.n_frames), mem.whisper)
    pre = {"avatar_audio": res}
    spill_avatar_whisper(pre)
    assert res["audio"].whisper is None and isinstance(res["whisper_rows"], RowFile)
    np.testing.assert_array_equal(res["whisper_rows"](5, 50), mem.whisper[5:50])
