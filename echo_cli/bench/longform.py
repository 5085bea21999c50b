"""Long dialogues for memory and speed checks, built by looping real media from ../shared/data.

    from echo_cli.bench.longform import build_dialogue
    spec = build_dialogue(10, Path("/tmp/lf/10min"))         # -> /tmp/lf/10min/dialogue.yaml

One 32-second cycle, repeated to the length asked for (ffmpeg -stream_loop, so nothing
long is ever held in memory here):
  avatar   real radio speech for 16 s (RD_Radio31_000 + RD_Radio34_002), then 16 s of silence
  user     16 s of silence, then 16 s of real radio speech (RD_Radio36_000 + RD_Radio40_000)
  turns    avatar 0-16 s, user 16-32 s in every cycle (avatar turns carry an emotion)
The avatar is a real portrait (portraits/d12.jpg). The user is heard only (`user="audio"`,
the cheapest on disk), or also seen (`user="video"`: clips/d3.mp4, a real listening face,
looped and scaled down to 160 px to keep the file small), or absent (`user="none"`).
Transcript: `transcript="faster-whisper"` (default) makes the render transcribe both long
tracks itself; `transcript="file"` transcribes each 16-s half once here (faster-whisper on
the same real speech) and writes transcript_<len>.json with those words repeated in every
cycle (speaker-labelled), so a long memory check need not spend hours transcribing while
every length-dependent array of the render is still built (features, LCU, frames, mux).
Disk: audio is FLAC (16 kHz mono, about 1 MB per minute per track); the user video at
160 px is about 1-2 MB per minute. Files are reused when already built (same name).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError

logger = log.get("echo_cli.bench.longform")

PORTRAIT = "portraits/d12.jpg"
AVATAR_SPEECH = ("audio/RD_Radio31_000.wav", "audio/RD_Radio34_002.wav")
USER_SPEECH = ("audio/RD_Radio36_000.wav", "audio/RD_Radio40_000.wav")
USER_VIDEO = "clips/d3.mp4"
HALF = 16.0                        # seconds of one speaker's half-cycle
EMOTIONS = ("calm", "friendly", "happy")


def data_dir(data: str | Path | None = None) -> Path:
    from echo_cli.bench.common import shared_data

    root = Path(data) if data else shared_data()
    need = [PORTRAIT, USER_VIDEO, *AVATAR_SPEECH, *USER_SPEECH]
    if root is None or any(not (root / n).is_file() for n in need):
        where = root or "../shared/data"
        raise InputError("real media for long dialogues not found", path=str(where),
                         fix="set ECHO_SHARED_DATA to the shared data folder (portraits/, audio/, clips/)")
    return root


def _half(paths: list[Path]) -> np.ndarray:
    """HALF seconds of speech (the files in turn, cut or padded with silence)."""
    from echo_cli.media.audio_io import load_audio
    from echo_cli.schema import SAMPLE_RATE

    w = np.concatenate([load_audio(p) for p in paths]).astype(np.float32)
    n = int(HALF * SAMPLE_RATE)
    return w[:n] if len(w) >= n else np.pad(w, (0, n - len(w)))


def _loop(src: Path, dst: Path, seconds: float, codec_args: list[str]) -> None:
    """ffmpeg -stream_loop: `src` repeated to exactly `seconds`, written atomically."""
    from echo_cli.errors import OutputError
    from echo_cli.io_atomic import atomic_path
    from echo_cli.media import ffmpeg as ff

    with atomic_path(dst) as tmp:
        args = ff.base_args() + ["-stream_loop", "-1", "-i", str(src), "-t", f"{seconds:.3f}", *codec_args,
                                 "-f", "flac" if dst.suffix == ".flac" else "mp4", str(tmp)]
        ff.run(args, what=f"build {dst.name}", path=dst, error=OutputError, fix="check free disk space")


def looped_words(root: Path, seconds: float, with_user: bool = True) -> list[dict]:
    """Words of each half transcribed once (faster-whisper), repeated at every cycle's offset
    up to `seconds`: the transcript the render would get from the looped tracks."""
    from echo_cli.preprocess.transcript import transcribe

    halves = [("avatar", 0.0, AVATAR_SPEECH)] + ([("user", HALF, USER_SPEECH)] if with_user else [])
    base = [(who, off, w) for who, off, paths in halves
            for w in transcribe(_half([root / p for p in paths]), backend="faster-whisper").words]
    out, t = [], 0.0
    while t < seconds:
        out += [{"text": w.text, "start": round(t + off + w.start, 3), "end": round(t + off + w.end, 3), "speaker": who}
                for who, off, w in base if t + off + w.end <= seconds]
        t += 2 * HALF
    return out


def turns(seconds: float) -> list[dict]:
    out = []
    t, k = 0.0, 0
    while t < seconds - 0.5:
        a_end = min(t + HALF, seconds)
        out.append({"speaker": "avatar", "start": round(t, 3), "end": round(a_end, 3),
                    "emotion": EMOTIONS[k % len(EMOTIONS)]})
        if a_end + 0.5 < seconds:
            out.append({"speaker": "user", "start": round(a_end, 3), "end": round(min(t + 2 * HALF, seconds), 3)})
        t += 2 * HALF
        k += 1
    return out


def build_dialogue(minutes: float, out_dir: str | Path, data: str | Path | None = None, *, user: str = "audio",
                   preset: str = "default", transcript: str = "faster-whisper", seed: int = 0,
                   layout: str | None = None) -> Path:
    """Write looped media and a dialogue.yaml of `minutes` into out_dir; return the yaml path.
    layout: the output's (default: side-by-side when the user is seen, else the avatar alone)."""
    import yaml

    from echo_cli.io_atomic import write_text
    from echo_cli.media.audio_io import write_wav

    if user not in ("audio", "video", "none"):
        raise InputError(f"unknown user mode '{user}'", fix="use audio, video or none")
    root = data_dir(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds = float(minutes) * 60.0
    silence = np.zeros(int(HALF * 16000), np.float32)
    tag = f"{seconds:g}s"
    avatar_audio = out / f"avatar_{tag}.flac"
    user_audio = out / f"user_{tag}.flac"
    flac = ["-vn", "-ac", "1", "-ar", "16000", "-c:a", "flac"]
    if not avatar_audio.is_file():
        cyc = out / "avatar_cycle.wav"
        write_wav(cyc, np.concatenate([_half([root / p for p in AVATAR_SPEECH]), silence]))
        _loop(cyc, avatar_audio, seconds, flac)
    if user != "none" and not user_audio.is_file():
        cyc = out / "user_cycle.wav"
        write_wav(cyc, np.concatenate([silence, _half([root / p for p in USER_SPEECH])]))
        _loop(cyc, user_audio, seconds, flac)
    spec: dict = {"version": 1,
                  "avatar": {"image": str((root / PORTRAIT).resolve()), "audio": str(avatar_audio.resolve())},
                  "turns": turns(seconds) if user != "none" else
                  [t for t in turns(seconds) if t["speaker"] == "avatar"],
                  "transcript": {"source": transcript},
                  "output": {"path": str((out / f"dialogue_{tag}.mp4").resolve()),
                             "audio_mix": "both" if user != "none" else "avatar",
                             "layout": layout or ("side-by-side" if user == "video" else "avatar")},
                  "preset": preset, "seed": int(seed)}
    if user != "none":
        spec["user"] = {"audio": str(user_audio.resolve())}
    if user == "video":
        user_video = out / f"user_{tag}_160.mp4"
        if not user_video.is_file():
            _loop(root / USER_VIDEO, user_video, seconds,
                  ["-an", "-vf", "scale=160:160,fps=25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "30",
                   "-pix_fmt", "yuv420p"])
        spec["user"]["video"] = str(user_video.resolve())
    if transcript == "file":
        tr_path = out / f"transcript_{tag}.json"
        if not tr_path.is_file():
            write_text(tr_path, json.dumps({"language": "en", "words": looped_words(root, seconds, user != "none")}))
        spec["transcript"] = {"source": "file", "path": str(tr_path.resolve())}
    path = out / "dialogue.yaml"
    header = (f"# {minutes:g}-minute dialogue built by echo_cli.bench.longform from looped real media\n"
              f"# ({root}): avatar {PORTRAIT} + {', '.join(AVATAR_SPEECH)}; user {', '.join(USER_SPEECH)}"
              + (f" + {USER_VIDEO} (160 px)" if user == "video" else "") + "\n")
    write_text(path, header + yaml.safe_dump(spec, sort_keys=False))
    logger.info("built %s (%s, user %s)", path, tag, user)
    return path


def disk_mb(folder: str | Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2 ** 20


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="build a looped-media dialogue")
    ap.add_argument("minutes", type=float)
    ap.add_argument("out_dir")
    ap.add_argument("--user", choices=("audio", "video", "none"), default="audio")
    ap.add_argument("--transcript", choices=("faster-whisper", "file"), default="faster-whisper")
    ap.add_argument("--data", default=os.environ.get("ECHO_SHARED_DATA"))
    a = ap.parse_args()
    p = build_dialogue(a.minutes, a.out_dir, a.data, user=a.user, transcript=a.transcript)
    print(p, f"{disk_mb(a.out_dir):.1f} MB")
