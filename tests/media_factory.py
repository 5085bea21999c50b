"""Bad (and short good) media for the batch and reliability tests, made on the fly in tmp dirs.

Everything is generated with the ffmpeg that imageio-ffmpeg ships, numpy and PIL, from the
real clips in ../shared/data where a real face or real speech matters. Nothing is committed.
Every ffmpeg call is an argument list.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------
# Locations and tools
# --------------------------------------------------------------------------------------

def shared_data() -> Path | None:
    p = Path(os.environ.get("ECHO_SHARED_DATA", REPO.parent / "shared" / "data"))
    return p if (p / "portraits").is_dir() else None


def need_shared() -> Path:
    import pytest

    p = shared_data()
    if p is None:
        pytest.skip("../shared/data is absent (set ECHO_SHARED_DATA): real media needed")
    return p


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str, timeout: float = 120) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{r.stderr}")


def cli_cmd(*args: str) -> list[str]:
    """`echo-cli ...` through the venv's interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "echo_cli", *map(str, args)]


# --------------------------------------------------------------------------------------
# Verifying outputs (ffprobe is not shipped by imageio-ffmpeg: ffmpeg -i + a full decode)
# --------------------------------------------------------------------------------------

def probe(path: Path) -> dict:
    """Streams and duration of a file from ffmpeg's own parser; {} when unreadable."""
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=60)
    err = r.stderr
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err)
    if not m:
        return {}
    dur = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return {"duration": dur, "video": re.findall(r"Stream #\S+.*Video: (\w+)", err),
            "audio": re.findall(r"Stream #\S+.*Audio: (\w+)", err), "yuv420p": "yuv420p" in err}


def valid_video(path: Path) -> bool:
    """Decodes completely without a single error: the file is whole, not truncated."""
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return False
    r = subprocess.run([ffmpeg_exe(), "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
                       capture_output=True, text=True, timeout=300)
    info = probe(path)
    return r.returncode == 0 and not r.stderr.strip() and bool(info.get("video")) and info.get("duration", 0) > 0


# --------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------

def write_wav(path: Path, samples: np.ndarray, sr: int = 16000) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path


def speech_clip(path: Path, seconds: float = 2.0, start: float = 0.5, source: str = "RD_Radio31_000.wav") -> Path:
    """A few seconds of real speech from ../shared/data/audio as 16 kHz mono WAV."""
    src = need_shared() / "audio" / source
    ffmpeg("-ss", f"{start}", "-t", f"{seconds}", "-i", src, "-ac", "1", "-ar", "16000", path)
    return path


def silent_wav(path: Path, seconds: float = 2.0) -> Path:
    return write_wav(path, np.zeros(int(16000 * seconds), np.float32))


def empty_wav(path: Path) -> Path:
    """A valid WAV header with zero samples."""
    return write_wav(path, np.zeros(0, np.float32))


def eight_hour_header_wav(path: Path, real_seconds: float = 1.0) -> Path:
    """A WAV whose header claims 8 hours of 48 kHz stereo, followed by one real second of data:
    a reader that allocates from the header asks for ~5.5 GB."""
    sr, ch = 48000, 2
    data = (np.sin(np.arange(int(sr * real_seconds)) / 10.0) * 8000).astype("<i2")
    data = np.repeat(data[:, None], ch, 1).tobytes()
    claimed = 8 * 3600 * sr * ch * 2
    hdr = b"RIFF" + struct.pack("<I", min(claimed + 36, 0xFFFFFFFF)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 1, ch, sr, sr * ch * 2, ch * 2, 16)
    hdr += b"data" + struct.pack("<I", min(claimed, 0xFFFFFFFF))
    path.write_bytes(hdr + data)
    return path


def corrupt_audio(path: Path) -> Path:
    """Looks like a WAV by name, is random bytes."""
    path.write_bytes(b"RIFF" + np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return path


# --------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------

def face_clip(path: Path, seconds: float = 2.0, source: str = "clips/d12.mp4", *pre: str, vf: str | None = None,
              r: float | None = None, extra: tuple[str, ...] = ()) -> Path:
    """A short re-encode of a real face clip, optionally filtered (fps, SAR, rotation...)."""
    src = need_shared() / source
    args = [*pre, "-t", f"{seconds}", "-i", src]
    if vf:
        args += ["-vf", vf]
    if r:
        args += ["-r", f"{r}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", *extra, path]
    ffmpeg(*args)
    return path


def truncated(src: Path, dst: Path, fraction: float = 0.4) -> Path:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def corrupted(src: Path, dst: Path) -> Path:
    """Header kept, most of the payload overwritten with noise."""
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(1)
    a = min(len(data) // 10, 4096)
    data[a:] = rng.integers(0, 256, len(data) - a, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def audio_only_mp4(path: Path, seconds: float = 2.0) -> Path:
    src = need_shared() / "audio" / "RD_Radio31_000.wav"
    ffmpeg("-t", f"{seconds}", "-i", src, "-vn", "-c:a", "aac", path)
    return path


def vfr_clip(path: Path, seconds: float = 3.0) -> Path:
    """Irregular frame times (frames dropped in a pattern, timestamps kept): variable frame rate."""
    return face_clip(path, seconds, "clips/d12.mp4",
                     vf="select='not(mod(n\\,5))+not(mod(n\\,3))'", extra=("-fps_mode", "vfr"))


def rotated_clip(path: Path, seconds: float = 2.0) -> Path:
    """A phone-style clip: frames stored sideways with a 90-degree display rotation."""
    tmp = path.with_name("unrotated_" + path.name)
    face_clip(tmp, seconds, "clips/d12.mp4", vf="transpose=2")
    ffmpeg("-display_rotation", "90", "-i", tmp, "-c", "copy", path)
    tmp.unlink()
    return path


def leaving_face_clip(path: Path, seconds: float = 3.0) -> Path:
    """The face slides out of the frame to the right during the last third."""
    src = need_shared() / "clips" / "d12.mp4"
    ffmpeg("-t", f"{seconds}", "-i", src, "-filter_complex",
           f"color=black:s=512x512:d={seconds}[bg];[bg][0:v]overlay=x='if(gt(t,{seconds * 2 / 3}),(t-{seconds * 2 / 3})*900,0)':y=0:shortest=1",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", path)
    return path


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------

def portrait(name: str = "s1.jpg"):
    from PIL import Image

    return Image.open(need_shared() / "portraits" / name).convert("RGB")


def image_variant(path: Path, kind: str) -> Path:
    from PIL import Image

    im = portrait()
    if kind == "8k":
        im.resize((7680, 4320)).save(path, quality=85)
    elif kind == "tiny":
        im.resize((16, 16)).save(path)
    elif kind == "gray":
        im.convert("L").save(path)
    elif kind == "cmyk":
        im.convert("CMYK").save(path, "JPEG")
    elif kind == "16bit":
        arr = (np.asarray(im.convert("L"), np.uint16) * 257)
        Image.fromarray(arr.astype(np.uint16)).save(path)       # I;16 PNG
    elif kind == "alpha":
        rgba = im.convert("RGBA")
        a = np.full(im.size[::-1], 255, np.uint8)
        a[:, : a.shape[1] // 6] = 0
        rgba.putalpha(Image.fromarray(a))
        rgba.save(path)
    elif kind == "cat":
        from skimage import data

        Image.fromarray(data.chelsea()).save(path)
    elif kind == "two_faces":
        b = portrait("s2.jpg").resize(im.size)
        canvas = Image.new("RGB", (im.width * 2, im.height))
        canvas.paste(im, (0, 0))
        canvas.paste(b, (im.width, 0))
        canvas.save(path)
    else:
        raise ValueError(kind)
    return path


# --------------------------------------------------------------------------------------
# Dialogues and checkpoints
# --------------------------------------------------------------------------------------

def srt(path: Path, text: str = "hello there, how are you", seconds: float = 2.0) -> Path:
    path.write_text(f"1\n00:00:00,000 --> 00:00:0{min(9, int(seconds))},{int((seconds % 1) * 1000):03d}\n{text}\n\n")
    return path


def dialogue_yaml(path: Path, *, image: Path | None = None, video: Path | None = None, audio: Path | None = None,
                  user_video: Path | None = None, output: str = "out.mp4", turns: list | None = None,
                  transcript: Path | None = None, checkpoint: Path | None = None, raw_extra: str = "") -> Path:
    """A short draft-preset dialogue (explicit transcript file: no Whisper run, fast)."""
    lines = ["version: 1", "avatar:"]
    if image is not None:
        lines.append(f"  image: {json.dumps(str(image))}")
    if video is not None:
        lines.append(f"  video: {json.dumps(str(video))}")
    if audio is not None:
        lines.append(f"  audio: {json.dumps(str(audio))}")
    if user_video is not None:
        lines += ["user:", f"  video: {json.dumps(str(user_video))}"]
    if turns is not None:
        lines.append("turns:")
        for sp, s, e in turns:
            lines += [f"  - speaker: {sp}", f"    start: {s}", f"    end: {e}"]
    if transcript is not None:
        lines += ["transcript:", "  source: file", f"  path: {json.dumps(str(transcript))}"]
    lines += ["output:", f"  path: {json.dumps(output)}", "preset: draft", "seed: 0"]
    if checkpoint is not None:
        lines.append(f"checkpoint: {json.dumps(str(checkpoint))}")
    path.write_text("\n".join(lines) + "\n" + raw_extra)
    return path


def truncated_checkpoint(dst: Path) -> Path:
    src = REPO / "echo_cli" / "checkpoints" / "default.safetensors"
    data = src.read_bytes() if src.is_file() else b"\x00" * 4096
    dst.write_bytes(data[: max(64, len(data) // 3)])
    js = src.with_suffix(".json")
    if js.is_file():
        shutil.copy(js, dst.with_suffix(".json"))
    return dst


def mismatched_checkpoint(dst: Path) -> Path:
    """A valid safetensors file whose tensors do not fit the model code."""
    import torch
    from safetensors.torch import save_file

    save_file({"not_a_layer.weight": torch.zeros(3, 5)}, str(dst))
    src = REPO / "echo_cli" / "checkpoints" / "default.json"
    if src.is_file():
        shutil.copy(src, dst.with_suffix(".json"))
    else:
        dst.with_suffix(".json").write_text(json.dumps({"schema_version": 1}))
    return dst


class _Payload:
    """Unpickling this creates a file: proof that a loader ran pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickle_checkpoint(dst: Path, marker: Path) -> Path:
    import pickle

    dst.write_bytes(pickle.dumps({"state_dict": _Payload(str(marker))}))
    return dst


# --------------------------------------------------------------------------------------
# Injectable jobs for the scheduling tests (module level: spawned workers import them)
# --------------------------------------------------------------------------------------

def tiny_render(job) -> dict:
    """A real, short H.264+AAC mp4 written through io_atomic (scheduling tests only; the
    acceptance tests use the real renderer). Sleeps ECHO_TEST_SLEEP seconds while the
    temp file exists, so kills land mid-write."""
    from echo_cli import io_atomic

    with io_atomic.atomic_path(job.output) as tmp:
        ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", tmp)
        time.sleep(float(os.environ.get("ECHO_TEST_SLEEP", "0")))
        log = os.environ.get("ECHO_TEST_RENDER_LOG")
        if log:
            with open(log, "a") as f:       # one line per completed render: counts renders per job
                f.write(f"{job.id}\n")
    return {"duration": 1.0, "timings": {"encode": 0.0}}


def failing_render(job) -> dict:
    """Permanent for ids starting 'bad', transient (OSError EIO) on the first try of 'flaky'."""
    from echo_cli.errors import InputError

    if job.id.startswith("bad"):
        raise InputError("no face found in the reference image", path=job.inputs.get("reference"),
                         fix="use a portrait with one visible face")
    if job.id.startswith("flaky"):
        flag = Path(str(job.output) + ".tried")
        if not flag.exists():
            flag.touch()
            raise OSError(5, "Input/output error (simulated NFS hiccup)")
    return tiny_render(job)


def wait_for(pred, timeout: float = 60.0, step: float = 0.05) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(step)
    return False


def model_missing_render(job) -> dict:
    """Every job fails like a build without a checkpoint (a batch-wide, not per-job, error)."""
    from echo_cli.api.render import default_checkpoint
    from echo_cli.errors import ModelError

    raise ModelError("checkpoint not found", path=str(default_checkpoint()), fix="install the checkpoint")
