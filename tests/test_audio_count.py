"""Track lengths without a second decode (speed round 3): the render's timeline length
comes from a WAV header (media.audio_io.wav_frames) or from the preprocessed features
(api.render.load_tracks), and must equal the decoded sample count exactly."""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from echo_cli.media.audio_io import count_samples, iter_audio, wav_frames, write_mix


def _decoded(path) -> int:
    return sum(b.size for b in iter_audio(path))


def test_wav_header_count_equals_the_decode_on_real_files(shared_data):
    wavs = sorted((shared_data / "audio").glob("*.wav"))
    assert wavs
    for p in wavs:
        n = wav_frames(p)
        if n is not None:                              # 16 kHz files: exact from the header
            assert n == _decoded(p), p.name
        assert count_samples(p) == _decoded(p), p.name
    assert any(wav_frames(p) is not None for p in wavs)     # RD_Radio*: 16 kHz stereo PCM
    assert any(wav_frames(p) is None for p in wavs)         # 44.1/48 kHz: resampled, so decoded


def test_mixed_track_is_counted_from_its_header(shared_data, tmp_path):
    """write_mix's float32 WAV (what mux counts) reads back at its exact length."""
    a = shared_data / "audio" / "RD_Radio34_002.wav"
    b = shared_data / "audio" / "sun.wav"
    out = tmp_path / "mix.wav"
    n = write_mix([a, b], out, n_samples=200_001)
    assert n == 200_001 and wav_frames(out) == n == _decoded(out)


def _wav(path: Path, frames: int, *, rate=16000, channels=1, bits=16, tag=1, extensible=False,
         data_size=None, trailer=b"") -> Path:
    align = channels * bits // 8
    data = (np.arange(frames * channels) % 200).astype(np.uint8).tobytes() * (bits // 8)
    data = data[: frames * align]
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * align, align, bits)
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data + trailer
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_wav_header_variants(tmp_path):
    assert wav_frames(_wav(tmp_path / "a.wav", 1234)) == 1234 == _decoded(tmp_path / "a.wav")
    p = _wav(tmp_path / "b.wav", 999, channels=2, bits=24, extensible=True)
    assert wav_frames(p) == 999 == _decoded(p)
    p = _wav(tmp_path / "c.wav", 500, trailer=b"LIST" + struct.pack("<I", 4) + b"INFO")   # chunk after data
    assert wav_frames(p) == 500 == _decoded(p)
    # not certain from the header: decoded instead
    assert wav_frames(_wav(tmp_path / "d.wav", 800, rate=22050)) is None
    p = _wav(tmp_path / "e.wav", 700, data_size=0xFFFFFFFF)          # streamed WAV: size unknown
    assert wav_frames(p) is None and count_samples(p) == _decoded(p)
    p = _wav(tmp_path / "f.wav", 700, data_size=700 * 2 + 4000)      # truncated file
    assert wav_frames(p) is None and count_samples(p) == _decoded(p)
    (tmp_path / "g.wav").write_bytes(b"not a wav at all")
    assert wav_frames(tmp_path / "g.wav") is None


@pytest.fixture(scope="module")
def aac_track(shared_data, tmp_path_factory):
    """The AAC sound of a real clip, without its picture (no face tracking needed)."""
    from echo_cli.media.ffmpeg import ffmpeg_exe

    out = tmp_path_factory.mktemp("aac") / "s13.m4a"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(shared_data / "clips" / "s13.mp4"), "-vn",
                    "-c:a", "copy", str(out)], check=True)
    return out


def test_load_tracks_from_preprocessed_features_equals_the_decode(shared_data, aac_track, cache_dir):
    """load_tracks takes each track's length from its cached features (no decode); the
    count is the one a decode gives, for a resampled WAV and for AAC."""
    from echo_cli.api.render import load_tracks
    from echo_cli.preprocess.pipeline import preprocess_media
    from echo_cli.schema import SAMPLE_RATE

    avatar, user = shared_data / "audio" / "sun.wav", aac_track
    pre = {}
    for key, p in (("avatar_audio", avatar), ("user_audio", user)):
        r = preprocess_media(p, fps=25.0, cache=True, whisper=False)
        n = int(round(r["audio"].duration * SAMPLE_RATE))
        assert n == _decoded(p), p.name
        pre[key] = {**r, "path": str(p), "n_samples": n}
    spec = SimpleNamespace(avatar=SimpleNamespace(audio=avatar, video=None),
                           user=SimpleNamespace(audio=user, video=None))
    fast = load_tracks(spec, {}, pre)
    slow = load_tracks(spec, {})
    assert fast == slow
    assert fast["n_samples"] == max(_decoded(avatar), _decoded(user))
    # a second process reads the features from the cache: same count
    again = preprocess_media(avatar, fps=25.0, cache=True, whisper=False)
    assert again["cached"]["audio"] and int(round(again["audio"].duration * SAMPLE_RATE)) == _decoded(avatar)


def test_a_track_of_a_few_samples_still_gets_an_audio_stream(tmp_path):
    """16 samples of speech (1 ms): one frame of video with one frame's worth of AAC (the
    track is padded with silence); it was an MP4 with no audio stream at all."""
    from media_factory import dialogue_yaml, portrait, speech_clip, srt

    from echo_cli.api.render import render
    from echo_cli.media.probe import probe

    img = tmp_path / "face.png"
    portrait().save(img)
    wav = speech_clip(tmp_path / "blip.wav", seconds=0.001)
    spec = dialogue_yaml(tmp_path / "d.yaml", image=img, audio=wav, transcript=srt(tmp_path / "t.srt", seconds=0.001))
    res = render(spec, overrides={"size": 128})
    info = probe(res["output"])
    assert res["frames"] == 1 and info.has_video and info.has_audio and info.audio_codec == "aac"
