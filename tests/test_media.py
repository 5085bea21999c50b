"""Media I/O on the real clips: probe facts, streaming decode (few frames each), audio.

Every clip of ../shared/data/clips is probed and decoded; only a few frames of each, so the
file stays fast. Rotated and variable-frame-rate inputs are derived from real clips with
ffmpeg into tmp (stream copy / retiming), since the corpus has neither.
"""
from __future__ import annotations

import subprocess
import tracemalloc

import numpy as np
import pytest

from echo_cli.errors import InputError
from echo_cli.media.audio_io import load_audio, mix
from echo_cli.media.ffmpeg import base_args, ffmpeg_exe
from echo_cli.media.probe import probe, probe_ffmpeg_text
from echo_cli.media.video_io import VideoWriter, iter_frames, target_size

# name: (display width, height, fps, audio) with audio in {"speech", "silent", "none", "sound"}
# -- from ../shared/data/README.md; d9 is stored 512x480 with SAR 15:16 -> 480x480 on screen.
CLIPS = {
    "d6": (480, 480, 30, "speech"), "d10": (512, 512, 30, "speech"), "d11": (512, 512, 25, "speech"),
    "d12": (512, 512, 25, "speech"), "d20": (480, 480, 25, "speech"), "d14": (512, 512, 30, "sound"),
    "s18": (1280, 720, 30, "speech"), "s13": (720, 1080, 25, "sound"), "sun": (576, 768, 25, "none"),
    "d0": (512, 512, 25, "none"), "d13": (720, 1280, 30, "none"), "d3": (512, 512, 30, "silent"),
    "d18": (480, 480, 30, "silent"), "d19": (480, 480, 30, "silent"), "d9": (480, 480, 30, "near-silent"),
    "s20": (480, 908, 30, "silent"), "s29": (720, 1364, 30, "silent"), "s32": (1280, 720, 30, "silent"),
}


def test_every_clip_is_covered(shared_data):
    assert {p.stem for p in (shared_data / "clips").glob("*.mp4")} == set(CLIPS)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_clip_probe_and_decode(shared_data, name):
    w, h, fps, audio = CLIPS[name]
    path = shared_data / "clips" / f"{name}.mp4"
    info = probe(path)
    assert (info.width, info.height) == (w, h)
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert info.has_video and not info.is_image and info.rotation == 0 and not info.vfr
    assert info.has_audio == (audio != "none")
    assert info.duration > 2.5 and info.n_frames == pytest.approx(info.duration * fps, abs=2)
    if name == "d9":
        assert info.sar == (15, 16)
    # the text fallback agrees with PyAV on the facts that matter
    alt = probe_ffmpeg_text(path)
    assert (alt.width, alt.height, alt.sar, alt.has_audio, alt.rotation) == (w, h, info.sar, info.has_audio, 0)

    # decode a few frames at a foreign rate: display size, square pixels, RGB uint8
    frames = list(iter_frames(path, fps=24, max_frames=3))
    assert len(frames) == 3
    assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in frames)
    assert frames[0].std() > 5                      # a picture, not a blank buffer

    if audio == "none":
        with pytest.raises(InputError, match="no audio stream"):
            load_audio(path)
        return
    wave = load_audio(path, duration=2.0, start=0.5)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == pytest.approx(32000, abs=400)   # 16 kHz mono
    rms = float(np.sqrt(np.mean(wave ** 2)))
    if audio == "silent":
        assert rms < 1e-3, rms
    elif audio in ("speech", "sound"):
        assert rms > 5e-3, rms


def test_non_square_pixels_are_resampled(shared_data):
    """d9 (512x480, SAR 15:16) decodes to 480x480 square pixels; forcing a size keeps aspect."""
    path = shared_data / "clips" / "d9.mp4"
    f = next(iter(iter_frames(path, max_frames=1)))
    assert f.shape == (480, 480, 3)
    f = next(iter(iter_frames(path, size=240, max_frames=1)))
    assert f.shape == (240, 240, 3)
    assert target_size(1280, 720, 256) == (456, 256)
    assert target_size(1280, 720, (301, 451)) == (301, 451)


def _ffmpeg(*args):
    subprocess.run(base_args() + [str(a) for a in args], check=True, capture_output=True)


def test_rotation_metadata_is_applied(shared_data, tmp_path):
    """A landscape clip tagged 'rotate 90' (display matrix) decodes as portrait, rotated CCW."""
    src = shared_data / "clips" / "s32.mp4"
    rot = tmp_path / "rot90.mp4"
    _ffmpeg("-display_rotation", "90", "-i", src, "-t", "0.5", "-c", "copy", "-an", rot)
    info = probe(rot)
    assert info.rotation == 90 and (info.width, info.height) == (720, 1280)
    assert probe_ffmpeg_text(rot).rotation == 90
    r = next(iter(iter_frames(rot, max_frames=1))).astype(np.int16)
    o = next(iter(iter_frames(src, max_frames=1))).astype(np.int16)
    assert r.shape == (1280, 720, 3)
    assert np.abs(r - np.rot90(o, 1)).mean() < 1.0           # exactly the CCW rotation
    assert np.abs(r - np.rot90(o, -1)).mean() > 5.0


def test_variable_frame_rate_is_resampled_to_constant(shared_data, tmp_path):
    """25 frames at 25 fps then 25 frames at 12.5 fps (3 s): decoding at 25 fps gives 75 frames."""
    vfr = tmp_path / "vfr.mp4"
    _ffmpeg("-i", shared_data / "clips" / "d11.mp4", "-t", "3",
            "-vf", "setpts='if(lt(N,25),N/25/TB,(25+(N-25)*2)/25/TB)'", "-fps_mode", "vfr", "-an", vfr)
    info = probe(vfr)
    assert info.vfr and info.n_frames == 50
    frames = list(iter_frames(vfr, fps=25))
    assert len(frames) == pytest.approx(75, abs=1)


def test_decode_streams_in_constant_memory(shared_data):
    """150 frames of d6 (480x480) = 100 MB decoded; Python-side peak memory stays a few frames."""
    frame_mb = 480 * 480 * 3 / 1e6
    tracemalloc.start()
    n = 0
    for f in iter_frames(shared_data / "clips" / "d6.mp4", max_frames=150):
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 150
    assert peak / 1e6 < 10 * frame_mb, f"peak {peak / 1e6:.1f} MB"


def test_images_decode_as_one_frame(shared_data):
    path = shared_data / "portraits" / "art_0.png"
    info = probe(path)
    assert info.is_image and info.n_frames == 1 and info.duration == 0 and not info.has_audio
    frames = list(iter_frames(path, fps=25, size=256))
    assert len(frames) == 1 and frames[0].shape[0] == 256
    with pytest.raises(InputError, match="no audio"):
        load_audio(path)


def test_audio_files_resampled_to_16k_mono(shared_data):
    for name, seconds in [("RD_Radio31_000.wav", 8.0), ("imagine.wav", 5.6), ("sun.wav", 22.5)]:
        info = probe(shared_data / "audio" / name)
        assert info.has_audio and not info.has_video
        wave = load_audio(shared_data / "audio" / name)
        assert wave.dtype == np.float32 and np.abs(wave).max() <= 1.0
        assert len(wave) / 16000 == pytest.approx(seconds, abs=0.1)


def test_cover_art_in_an_audio_file_is_not_a_video(shared_data, tmp_path):
    """MP3/M4A files often carry an album cover (an attached picture): still audio only."""
    speech = shared_data / "audio" / "RD_Radio31_000.wav"
    cover = shared_data / "portraits" / "s0.jpg"
    for name, codec in (("memo.mp3", ["-c:a", "libmp3lame", "-id3v2_version", "3"]), ("memo.m4a", ["-c:a", "aac"])):
        out = tmp_path / name
        _ffmpeg("-t", "2", "-i", speech, "-i", cover, "-map", "0:a", "-map", "1:v", "-c:v", "mjpeg",
                "-disposition:v", "attached_pic", *codec, out)
        for info in (probe(out), probe_ffmpeg_text(out)):
            assert info.has_audio and not info.has_video and not info.is_image, (name, info)
        wave = load_audio(out)
        assert len(wave) / 16000 == pytest.approx(2.0, abs=0.06) and np.abs(wave).max() > 0.05


def test_late_audio_keeps_its_place_against_the_picture(shared_data, tmp_path):
    """A video whose sound starts 1 s in: decoding pads that second with silence, and a mux
    of that file keeps it (both used to start the speech at 0, a 1 s lead over the mouth)."""
    from echo_cli.media.mux import mux

    clip = shared_data / "clips" / "d12.mp4"
    speech = shared_data / "audio" / "RD_Radio31_000.wav"
    late = tmp_path / "late.mp4"
    _ffmpeg("-t", "3", "-i", clip, "-itsoffset", "1", "-t", "2", "-i", speech, "-map", "0:v", "-map", "1:a",
            "-c:v", "copy", "-c:a", "aac", late)
    plain = load_audio(speech)[:32000]
    for path in (late, mux(clip, late, tmp_path / "muxed.mp4", fps=25.0).path):
        wave = load_audio(path)
        rms = lambda x: float(np.sqrt(np.mean(x ** 2)))
        assert rms(wave[:14000]) < 0.01 * rms(plain), path        # the first ~0.9 s is silence
        lag = int(np.argmax(np.correlate(wave[12000:24000], plain[:4000], "valid")))
        assert abs(12000 + lag - 16000) < 400, path                 # the speech starts 1 s in


def test_speech_on_any_channel_survives_the_downmix(shared_data, tmp_path):
    """Speech on the third channel of a 3-channel WAV (read as 2.1: the LFE) used to decode
    as silence, and the avatar only listened; stereo keeps ffmpeg's standard downmix."""
    import soundfile as sf

    speech = load_audio(shared_data / "audio" / "RD_Radio31_000.wav")[:32000]
    three = np.zeros((len(speech), 3), np.float32)
    three[:, 2] = speech
    sf.write(tmp_path / "3ch.wav", three, 16000, subtype="PCM_16")
    got = load_audio(tmp_path / "3ch.wav")
    assert np.corrcoef(got[:len(speech)], speech)[0, 1] > 0.99
    stereo = np.stack([speech, np.zeros_like(speech)], 1)
    sf.write(tmp_path / "2ch.wav", stereo, 16000, subtype="PCM_16")
    two = load_audio(tmp_path / "2ch.wav")
    assert np.abs(two - np.sqrt(0.5) * speech).max() < 2e-3       # -3 dB: ffmpeg's mono downmix of L


def test_bad_inputs_raise_input_error(tmp_path, shared_data):
    missing = tmp_path / "nope.mp4"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes((shared_data / "clips" / "d11.mp4").read_bytes()[:3000])
    zero_audio = tmp_path / "zero.wav"
    from echo_cli.media.audio_io import write_wav
    write_wav(zero_audio, np.zeros(0, np.float32))
    for p, what in [(missing, "not found"), (empty, "empty"), (garbage, "readable"), (truncated, None)]:
        with pytest.raises(InputError, match=what) as ei:
            load_audio(p)
        assert str(p.name) in ei.value.one_line()
        with pytest.raises(InputError):
            list(iter_frames(p, max_frames=1))
    with pytest.raises(InputError, match="zero length|no samples|empty"):
        load_audio(zero_audio)


def test_video_writer_even_size_and_atomic(shared_data, tmp_path):
    out = tmp_path / "w.mp4"
    with VideoWriter(out, 25, crf=23) as w:
        for f in iter_frames(shared_data / "clips" / "s13.mp4", fps=25, size=(301, 451), max_frames=20):
            w.write(f)
    info = probe(out)
    assert (info.width, info.height, info.n_frames) == (300, 450, 20)
    assert (info.video_codec, info.pix_fmt) == ("h264", "yuv420p")
    # an exception inside the block leaves nothing behind
    out2 = tmp_path / "aborted.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out2, 25) as w:
            w.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert not out2.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.mp4"]


def test_mix_pads_and_limits():
    a = np.full(10, 0.8, np.float32)
    b = np.full(5, 0.8, np.float32)
    m = mix([a, b])
    assert len(m) == 10 and np.abs(m).max() <= 1.0 and m[7] < m[2]


def test_ffmpeg_binary_found():
    exe = ffmpeg_exe()
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    assert "libx264" in out and " aac " in out


def test_output_folder_removed_mid_write_is_named(tmp_path):
    """A clean-up job deleting the output folder under a running render: the error says so
    (it was ffmpeg's raw "Error writing trailer" text)."""
    import shutil

    from echo_cli.errors import OutputError

    out = tmp_path / "out"
    with pytest.raises(OutputError, match="output folder was removed") as e:
        with VideoWriter(out / "v.mp4", 25) as w:
            for i in range(5):
                w.write(np.zeros((64, 64, 3), np.uint8))
            shutil.rmtree(out)
            for i in range(100):
                w.write(np.zeros((64, 64, 3), np.uint8))
    assert e.value.exit_code == 7 and not out.exists()


def test_ffmpeg_stderr_is_quoted_as_whole_lines_for_a_person():
    """Errors quote ffmpeg's stderr: its tail was cut at a character count ("ing input | [aac @
    0x55...]"); now whole lines, each once, without the decoder-address prefixes."""
    from echo_cli.media.ffmpeg import tail

    err = ("[aac @ 0x555ac947d280] channel element 0.0 duplicate\n"
           "[aist#0:1/aac @ 0x55f0c0] [dec:aac @ 0x55ed40] Error submitting packet to decoder: Invalid data\n"
           "[aist#0:1/aac @ 0x55f0c0] [dec:aac @ 0x55ed40] Error submitting packet to decoder: Invalid data\n") * 20
    out = tail(err, 120)
    assert out == "channel element 0.0 duplicate | Error submitting packet to decoder: Invalid data"
    assert "0x" not in tail(err) and len(tail(err)) <= 600
    assert tail("") == "" and tail(b"one line\n") == "one line"
