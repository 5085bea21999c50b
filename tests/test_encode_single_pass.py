"""api.render.encode writes the final MP4 in one ffmpeg pass (picture + sound + metadata)
when the audio is a file (speed round 3), and the result is the file the two-pass path
(VideoWriter, then media.mux) makes: same length rule, codecs, metadata, samples, frames."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.api.render import _encode_then_mux, _null_progress, encode
from echo_cli.config import resolve_settings
from echo_cli.media.audio_io import load_audio, write_mix
from echo_cli.media.mux import read_metadata
from echo_cli.media.video_io import iter_frames

FPS = 25
SECONDS = 2.3                                   # 57.5 frames of audio -> 58 frames of video


@pytest.fixture(scope="module")
def media(shared_data, tmp_path_factory):
    td = tmp_path_factory.mktemp("single")
    wav = td / "mix.wav"
    write_mix([shared_data / "audio" / "RD_Radio34_002.wav"], wav, n_samples=int(SECONDS * 16000))
    frames = np.stack(list(iter_frames(shared_data / "clips" / "d12.mp4", fps=FPS, size=128, max_frames=64)))
    return wav, frames


def _decode(path):
    import av

    with av.open(str(path)) as c:
        v = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        rate, codec = a.codec_context.sample_rate, a.codec_context.name
    return np.stack(v), load_audio(path), rate, codec


@pytest.mark.parametrize("n_given", [58, 64, 40])       # exact, trimmed, padded
def test_single_pass_equals_encode_then_mux(media, tmp_path, n_given):
    wav, frames = media
    settings = resolve_settings("default").model_copy(update={"fps": FPS})
    meta = {"model": "test", "seed": 7}
    one = encode(iter(frames[:n_given]), wav, tmp_path / "one.mp4", settings, metadata=meta, n_frames=n_given)
    two = _encode_then_mux(iter(frames[:n_given]), wav, tmp_path / "two.mp4", settings, meta, n_given,
                           _null_progress)
    assert one["frames"] == two["frames"] == 58
    assert one["duration"] == pytest.approx(two["duration"], abs=1e-3)
    assert (one["width"], one["height"], one["fps"]) == (two["width"], two["height"], two["fps"])
    v1, a1, r1, c1 = _decode(tmp_path / "one.mp4")
    v2, a2, r2, c2 = _decode(tmp_path / "two.mp4")
    assert (r1, c1) == (r2, c2) == (48000, "aac")
    assert a1.size == a2.size and np.abs(a1 - a2).max() < 1e-4
    assert v1.shape == v2.shape and v1.shape[0] == 58
    if n_given == 58:            # same x264 settings on the same frames: the same stream
        assert np.array_equal(v1, v2)
    else:                        # mux re-encodes a padded/trimmed stream (generation loss);
        src = frames[np.minimum(np.arange(58), n_given - 1)].astype(int)     # one pass does not
        assert np.abs(v1 - src).mean() <= np.abs(v2 - src).mean() + 0.05
    m1, m2 = read_metadata(tmp_path / "one.mp4"), read_metadata(tmp_path / "two.mp4")
    assert {k: m1.get(k) for k in ("model", "seed", "tool", "comment")} == \
           {k: m2.get(k) for k in ("model", "seed", "tool", "comment")}
    head = (tmp_path / "one.mp4").read_bytes()[:200_000]
    assert 0 <= head.find(b"moov") < head.find(b"mdat"), "moov before mdat (+faststart)"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temp files left


def test_single_pass_stops_a_longer_frame_stream(media, tmp_path):
    """Trimming stops pulling frames (a generator is closed, not drained)."""
    wav, frames = media
    settings = resolve_settings("default").model_copy(update={"fps": FPS})
    pulled = []
    closed = []

    def gen():
        try:
            for i, f in enumerate(frames):
                pulled.append(i)
                yield f
        finally:
            closed.append(True)

    res = encode(gen(), wav, tmp_path / "o.mp4", settings, n_frames=58)
    assert res["frames"] == 58 and len(pulled) == 58 and closed == [True]
