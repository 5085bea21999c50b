"""The muxer on real media: length, sync, codecs, metadata, faststart, atomicity under SIGKILL.

Frames of a ../shared/data clip are re-encoded with a *different* real audio track.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from echo_cli.media.audio_io import load_audio
from echo_cli.media.mux import mux, read_metadata
from echo_cli.media.probe import probe
from echo_cli.media.video_io import VideoWriter, iter_frames

FPS = 25


def stream_durations(path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        return (float(v.duration * v.time_base), v.frames, float(a.duration * a.time_base),
                v.codec_context.name, v.codec_context.format.name, a.codec_context.name)


def write_clip(shared_data, out, n, clip="d11.mp4", fps=FPS, size=None):
    with VideoWriter(out, fps) as w:
        for f in iter_frames(shared_data / "clips" / clip, fps=fps, size=size, max_frames=n):
            w.write(f)
    return out


def check_output(out, audio_seconds, fps=FPS):
    vdur, vframes, adur, vcodec, pix, acodec = stream_durations(out)
    assert (vcodec, pix, acodec) == ("h264", "yuv420p", "aac")
    assert abs(vdur - adur) <= 1.0 / fps + 1e-6, (vdur, adur)
    assert adur == pytest.approx(audio_seconds, abs=0.03)
    assert vframes == int(np.ceil(audio_seconds * fps - 1e-6))
    head = out.read_bytes()[:200_000]
    assert 0 <= head.find(b"moov") < head.find(b"mdat"), "moov atom must precede mdat (+faststart)"


def test_pad_short_video_to_real_audio_length_with_metadata(shared_data, tmp_path):
    video = write_clip(shared_data, tmp_path / "v.mp4", 50)                 # 2 s of d11's face
    wave = load_audio(shared_data / "audio" / "RD_Radio31_000.wav")         # 8 s, someone else's speech
    out = tmp_path / "out" / "talk.mp4"
    meta = {"model": "echo-test", "preset": "draft", "seed": 7, "tool_version": "9.9"}
    info = mux(video, wave, out, meta)
    check_output(out, len(wave) / 16000)
    assert info.has_audio and info.n_frames == 200
    tags = read_metadata(out)
    assert {k: tags[k] for k in meta} == {k: str(v) for k, v in meta.items()}
    assert "seed=7" in tags["comment"]
    # the padding clones the last frame: the final frames are identical to frame 49
    tail = list(iter_frames(out, start=7.5, max_frames=5))
    assert len(tail) == 5 and max(np.abs(t.astype(int) - tail[0]).mean() for t in tail) < 1.0
    assert sorted(p.name for p in out.parent.iterdir()) == ["talk.mp4"]     # no temp files left


def test_trim_long_video_to_audio_file(shared_data, tmp_path):
    video = write_clip(shared_data, tmp_path / "v.mp4", 100, clip="d12.mp4")  # 4 s
    audio = shared_data / "audio" / "imagine.wav"                            # 5.6 s, 48 kHz 24-bit
    seconds = len(load_audio(audio)) / 16000
    short = tmp_path / "short.wav"
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from echo_cli.media.audio_io import load_audio, write_wav
        write_wav({str(short)!r}, load_audio({str(audio)!r})[:int(16000 * 2.57)])""")], check=True)
    out = tmp_path / "trim.mp4"
    mux(video, short, out, {"model": "m"})
    check_output(out, 2.57)
    assert seconds > 5


def test_av_sync_flash_and_click(shared_data, tmp_path):
    """A white frame and a click at the same instant stay together (within one frame)."""
    t_event = 1.6
    frames = list(iter_frames(shared_data / "clips" / "d11.mp4", fps=FPS, max_frames=100))
    k = int(round(t_event * FPS))
    frames[k] = np.full_like(frames[k], 255)
    video = tmp_path / "v.mp4"
    with VideoWriter(video, FPS) as w:
        for f in frames:
            w.write(f)
    wave = load_audio(shared_data / "audio" / "RD_Radio34_002.wav")[: 16000 * 3] * 0.25
    i = int(t_event * 16000)
    wave[i:i + 320] = 0.95 * np.sign(np.sin(np.arange(320) * 2 * np.pi * 1000 / 16000))  # 20 ms burst
    out = tmp_path / "sync.mp4"
    mux(video, wave, out, {})
    check_output(out, 3.0)

    decoded = load_audio(out)
    env = np.sqrt(np.convolve(decoded ** 2, np.ones(160) / 160, mode="same"))
    t_audio = (np.argmax(env) - 160) / 16000                 # start of the burst (centre - 10 ms)
    brightness = [f.mean() for f in iter_frames(out, max_frames=75)]
    t_video = int(np.argmax(brightness)) / FPS
    assert t_video == pytest.approx(t_event, abs=0.5 / FPS)
    assert abs(t_audio - t_video) <= 1.0 / FPS, (t_audio, t_video)


def _video_packet_bytes(path):
    import av

    with av.open(str(path)) as c:
        return sum(p.size for p in c.demux(video=0) if p.size)


def test_exact_length_video_is_copied_not_reencoded(shared_data, tmp_path):
    video = write_clip(shared_data, tmp_path / "v.mp4", 50)                 # exactly 2.0 s at 25 fps
    wave = load_audio(shared_data / "audio" / "RD_Radio36_000.wav")[:32000]
    out = tmp_path / "copy.mp4"
    mux(video, wave, out, {"model": "m"})
    check_output(out, 2.0)
    assert _video_packet_bytes(out) == _video_packet_bytes(video)


def test_side_by_side_and_mixed_audio(shared_data, tmp_path):
    """layout side-by-side (user d3 at 30 fps, left) + audio_mix both, through api.render.encode."""
    from echo_cli.api.render import encode
    from echo_cli.config import resolve_settings
    from echo_cli.media.audio_io import mix

    settings = resolve_settings("draft", cli={"size": 256})
    avatar_frames = iter_frames(shared_data / "clips" / "d12.mp4", fps=settings.fps, size=256, max_frames=40)
    a = load_audio(shared_data / "audio" / "RD_Radio31_000.wav", duration=2.0)
    u = load_audio(shared_data / "clips" / "d11.mp4", duration=2.0)
    out = tmp_path / "sbs.mp4"
    res = encode(avatar_frames, mix([a, u]), out, settings, metadata={"model": "x"}, layout="side-by-side",
                 user_video=shared_data / "clips" / "d3.mp4", n_frames=40)
    info = probe(out)
    assert (info.width, info.height) == (512, 256)           # user (square clip at 256) | avatar
    assert res["frames"] == 50 and res["output"] == str(out)
    check_output(out, 2.0, fps=settings.fps)
    left, right = next(iter(iter_frames(out, max_frames=1)))[:, :256], None
    user0 = next(iter(iter_frames(shared_data / "clips" / "d3.mp4", size=256, max_frames=1)))
    assert np.abs(left.astype(int) - user0).mean() < 8       # the user really is on the left


KILL_SCRIPT = """
import sys
from pathlib import Path
from echo_cli.media.mux import mux
clip, out = sys.argv[1], sys.argv[2]
mux(clip, clip, out, {"model": "kill-test"}, preset="veryslow", crf=10)
"""


def test_sigkill_mid_write_leaves_no_output(shared_data, tmp_path):
    """SIGKILL while ffmpeg writes the final file: nothing at the output path, encoder gone."""
    import psutil

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "final.mp4"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(shared_data / "clips" / "d6.mp4"), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    part = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        parts = [p for p in out_dir.iterdir() if ".part" in p.name]
        if parts and parts[0].stat().st_size > 0:             # ffmpeg is writing the temp file
            part = parts[0]
            break
        time.sleep(0.05)
    assert part is not None, f"never saw a partial file; rc={proc.poll()} {proc.stderr.read()[-500:]!r}"
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(children, timeout=10)
    assert not out.exists()
    assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children), \
        "ffmpeg outlived its parent"
    assert not any(p.name == "final.mp4" for p in out_dir.iterdir())


def test_sigint_mid_write_cleans_up_everything(shared_data, tmp_path):
    """Ctrl-C (SIGINT) during the final encode: no output and no temp files left behind."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "final.mp4"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(shared_data / "clips" / "d6.mp4"), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    seen = False
    while time.monotonic() < deadline and proc.poll() is None:
        parts = [p for p in out_dir.iterdir() if ".part" in p.name]
        if parts and parts[0].stat().st_size > 0:
            seen = True
            break
        time.sleep(0.05)
    assert seen, proc.stderr.read()[-500:]
    os.kill(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=60)
    assert rc != 0
    assert list(out_dir.iterdir()) == []


def test_fit_length_trims_without_pulling_extra_frames_and_pads_with_the_last():
    from echo_cli.media.mux import fit_length

    pulled = []

    def source(k):
        try:
            for i in range(k):
                pulled.append(i)
                yield i
        finally:
            pulled.append("closed")

    assert list(fit_length(source(10), 4)) == [0, 1, 2, 3]
    assert pulled == [0, 1, 2, 3, "closed"]          # frame 4 is never rendered
    pulled.clear()
    assert list(fit_length(source(2), 5)) == [0, 1, 1, 1, 1]
    assert list(fit_length(iter([]), 3)) == []
