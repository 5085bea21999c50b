"""`echo-cli bench preprocess` (or `python -m echo_cli.bench.preprocess`): preprocessing speed.

Three measurements on ../shared/data, each with wall-clock and CPU time (CPU seconds of
this process, all its threads, and its finished children such as ffmpeg: on a shared,
loaded machine wall time depends on the neighbours, CPU time much less):
  face track     ms/frame on 512x512 clips (clips/d12, d11, d10), on decoded frames:
                 - the floor: MediaPipe FaceMesh alone (refine_landmarks, 1 face, video
                   mode), a plain process() loop on one thread;
                 - track_face with 1 thread and with the default threads
                   (preprocess.face.track_threads(): 2 on a 2-core machine): MediaPipe +
                   our landmark parsing, One-Euro, pose fit and crop boxes;
                 and track_face from the file (ffmpeg decode included); and with
                 TrackSettings.mirror (`preprocess --mirror`: the mirrored frame tracked too
                 and averaged). Quality beside speed: jitter, the mean frame-to-frame
                 acceleration of the pose-free landmarks in % of the eye distance (lower
                 is steadier; real motion sets a floor above zero)
  transcription  real-time factor (processing seconds / audio seconds) of faster-whisper
                 and WhisperX on the Whisper base model, int8 CPU (model load excluded)
  cache          preprocess_folder on a few clips into an empty cache, then again:
                 first / second wall time = the cache speed-up
The load average is read before and after every row. Target (issue 4): face track
<= 8 ms/frame (wall) at 512 px on 2 cores.
Self-contained: `measure(data_dir)` returns the record; `run(args)` is the bench CLI hook.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.bench.common import Timer

logger = log.get("echo_cli.bench.preprocess")

SET_OPTIONS = {"data": (str,), "parts": (str,), "threads": (int, 1, 256)}     # --set, checked by the CLI

FACE_CLIPS = ("clips/d12.mp4", "clips/d11.mp4", "clips/d10.mp4")       # 512 x 512
SPEECH = ("audio/RD_Radio31_000.wav", "audio/RD_Radio34_002.wav", "audio/RD_Radio36_000.wav")
CACHE_CLIPS = ("talking/grid_lrwp9a.mp4", "talking/grid_pwij3p.mp4", "talking/r3_May_5s.mp4")
TARGET_MS = 8.0                 # issue 4: face track at 512 px on 2 cores, wall ms/frame


def _load() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def _default_data() -> Path:
    env = os.environ.get("ECHO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def jitter(track) -> float:
    """Mean |second difference| of the pose-free landmarks (x, y), in % of the eye distance
    (the canonical face has a unit outer eye-corner distance)."""
    lm = track.canonical[..., :2]
    return 100.0 * float(np.linalg.norm(np.diff(lm, 2, axis=0), axis=-1).mean()) if len(lm) > 2 else 0.0


def _face_row(stage: str, rel: str, w: int, h: int, n: int, t: Timer, load0: float, found=None,
              track=None) -> dict:
    row = {"stage": stage, "input": f"{rel} {w}x{h}", "frames": n, "ms_per_frame": 1000 * t.seconds / n,
           "cpu_ms_per_frame": 1000 * t.cpu / n, "load": f"{load0:.2f}-{_load():.2f}"}
    if found is not None:
        row["face_found"] = float(found)
    if track is not None:
        row["jitter"] = jitter(track)
    return row


def bench_floor(frames: np.ndarray) -> Timer:
    """A plain MediaPipe FaceMesh loop (what any caller of MediaPipe pays): the floor."""
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True)
    try:
        mesh.process(frames[0])                                          # model load, first detection
        with Timer() as t:
            for f in frames:
                mesh.process(f)
    finally:
        mesh.close()
    return t


def bench_face(data: Path, clips=FACE_CLIPS, max_frames: int | None = None,
               threads: int | None = None, from_file: bool = True) -> list[dict]:
    from echo_cli.preprocess.face import TrackSettings, open_frames, track_face, track_threads

    threads = threads or track_threads()
    rows = []
    for rel in clips:
        frames_it, fps, w, h, _, _ = open_frames(data / rel)
        frames = []
        for f in frames_it:
            frames.append(f)
            if max_frames and len(frames) >= max_frames:
                break
        frames = np.stack(frames)
        n = len(frames)
        track_face(frames[:5], fps=fps, cache=False)                     # warm-up: graph + model load
        l0 = _load()
        t = bench_floor(frames)
        rows.append(_face_row("MediaPipe FaceMesh alone (floor, 1 thread)", rel, w, h, n, t, l0))
        for k in sorted({1, threads}):
            l0 = _load()
            with Timer() as t:
                tr = track_face(frames, fps=fps, threads=k)
            rows.append(_face_row(f"face track, decoded frames, {k} thread{'s' if k > 1 else ''}",
                                  rel, w, h, n, t, l0, tr.detected.mean(), tr))
        l0 = _load()
        with Timer() as t:
            tr = track_face(frames, fps=fps, threads=threads, settings=TrackSettings(mirror=True))
        rows.append(_face_row(f"mirror-averaged face track (--mirror), decoded frames, {threads} threads",
                              rel, w, h, n, t, l0, tr.detected.mean(), tr))
        if from_file and max_frames is None:
            l0 = _load()
            with Timer() as t:
                tr = track_face(data / rel, cache=False, threads=threads)
            rows.append(_face_row(f"face track from file (ffmpeg decode incl.), {threads} threads",
                                  rel, w, h, n, t, l0, tr.detected.mean()))
    return rows


def bench_transcription(data: Path, files=SPEECH, backends=("faster-whisper", "whisperx")) -> list[dict]:
    from echo_cli.features.audio import read_audio
    from echo_cli.preprocess.transcript import transcribe
    from echo_cli.schema import SAMPLE_RATE

    rows = []
    waves = [(rel, read_audio(data / rel)) for rel in files]
    for backend in backends:
        transcribe(waves[0][1][: 3 * SAMPLE_RATE], backend=backend, language="en")   # load models
        secs = wall = cpu = 0.0
        words = 0
        l0 = _load()
        for _rel, w in waves:
            with Timer() as c:
                t = transcribe(w, backend=backend, language="en")
            secs += len(w) / SAMPLE_RATE
            wall += c.seconds
            cpu += c.cpu
            words += len(t.words)
        rows.append({"stage": f"transcription {backend}", "input": f"{len(waves)} x 8 s speech",
                     "audio_s": secs, "rtf": wall / secs, "cpu_rtf": cpu / secs, "words": words,
                     "method": t.method, "load": f"{l0:.2f}-{_load():.2f}"})
    return rows


def bench_cache(data: Path, clips=CACHE_CLIPS) -> list[dict]:
    from echo_cli.api.preprocess import preprocess_folder
    from echo_cli.features.audio import whisper_model_dir
    from echo_cli.preprocess.pipeline import PreprocessOptions

    model = whisper_model_dir()
    with tempfile.TemporaryDirectory(prefix="echo-bench-") as tmp:
        folder = Path(tmp) / "media"
        folder.mkdir()
        for rel in clips:
            (folder / Path(rel).name).symlink_to(data / rel)
        old = {k: os.environ.get(k) for k in ("ECHO_CACHE_DIR", "ECHO_WHISPER_MODEL_DIR")}
        os.environ["ECHO_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["ECHO_WHISPER_MODEL_DIR"] = str(model)
        try:
            opts = PreprocessOptions(transcript=None)
            l0 = _load()
            with Timer() as c1:
                s1 = preprocess_folder(folder, options=opts)
            with Timer() as c2:
                s2 = preprocess_folder(folder, options=opts)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    assert not s1["failed"] and len(s2["cached"]) == len(clips), (s1["failed"], s2)
    load = f"{l0:.2f}-{_load():.2f}"
    return [{"stage": "cache: first run", "input": f"{len(clips)} clips (face + audio + whisper)",
             "seconds": c1.seconds, "cpu_seconds": c1.cpu, "load": load},
            {"stage": "cache: second run", "input": f"{len(clips)} clips", "seconds": c2.seconds,
             "cpu_seconds": c2.cpu, "speedup": c1.seconds / max(c2.seconds, 1e-9), "load": load}]


PARTS = ("face", "transcription", "cache")


def _weighted(rows: list[dict], prefix: str, key: str) -> float | None:
    sel = [r for r in rows if r["stage"].startswith(prefix)]
    n = sum(r["frames"] for r in sel)
    return sum(r[key] * r["frames"] for r in sel) / n if n else None


def measure(data_dir: str | Path | None = None, quick: bool = False, parts=PARTS,
            threads: int | None = None) -> dict:
    """The measurements named in `parts`; returns {"rows": [...], "summary": {...}}."""
    import torch

    from echo_cli.preprocess.face import track_threads

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data = Path(data_dir) if data_dir else _default_data()
    if not (data / "clips").is_dir():
        from echo_cli.errors import InputError

        raise InputError("shared data folder not found", path=data, fix="set ECHO_SHARED_DATA to ../shared/data")
    threads = threads or track_threads()
    load_start = _load()
    face = tr = cache = []
    if "face" in parts:
        # quick: all 183 frames of d12 (two chunks, so both threads work), no from-file row
        face = bench_face(data, FACE_CLIPS[:1] if quick else FACE_CLIPS, threads=threads, from_file=not quick)
    if "transcription" in parts:
        tr = bench_transcription(data, SPEECH[:1] if quick else SPEECH,
                                 ("faster-whisper",) if quick else ("faster-whisper", "whisperx"))
    if "cache" in parts:
        cache = bench_cache(data, CACHE_CLIPS[:2] if quick else CACHE_CLIPS)
    main_stage = f"face track, decoded frames, {threads} thread"
    summary = {
        "face_ms_per_frame_512": _weighted(face, main_stage, "ms_per_frame"),
        "face_cpu_ms_per_frame_512": _weighted(face, main_stage, "cpu_ms_per_frame"),
        "face_1thread_ms_per_frame_512": _weighted(face, "face track, decoded frames, 1 thread", "ms_per_frame"),
        "floor_ms_per_frame_512": _weighted(face, "MediaPipe FaceMesh alone", "ms_per_frame"),
        "floor_cpu_ms_per_frame_512": _weighted(face, "MediaPipe FaceMesh alone", "cpu_ms_per_frame"),
        "face_from_file_ms_per_frame_512": _weighted(face, "face track from file", "ms_per_frame"),
        "face_mirror_ms_per_frame_512": _weighted(face, "mirror-averaged", "ms_per_frame"),
        "jitter_512": _weighted(face, main_stage, "jitter"),
        "jitter_mirror_512": _weighted(face, "mirror-averaged", "jitter"),
        "face_threads": threads,
        "target_ms_per_frame": TARGET_MS,
        "transcription_rtf": {r["stage"].split()[-1]: r["rtf"] for r in tr},
        "transcription_cpu_rtf": {r["stage"].split()[-1]: r["cpu_rtf"] for r in tr},
        "cache_speedup": cache[-1]["speedup"] if cache else None,
        "load_start": load_start,
        "load_1min": _load(),
        "cores": os.cpu_count(),
    }
    ms = summary["face_ms_per_frame_512"]
    summary["target_met"] = None if ms is None else bool(ms <= TARGET_MS)
    return {"rows": face + tr + cache, "summary": summary}


def _git_state() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" + uncommitted changes" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def _markdown(rec: dict, command: str) -> str:
    s = rec["summary"]
    f = lambda v: "" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    lines = [f"Command: `{command}`", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, git {_git_state()}, {_cpu_model()}, "
             f"{s['cores']} cores, load average (1 min) {s['load_start']:.2f} at the start, "
             f"{s['load_1min']:.2f} at the end (per row in the last column).", ""]
    if s["face_ms_per_frame_512"] is not None:
        met = "**met**" if s["target_met"] else "**not met**"
        lines += [f"Face track at 512 px ({s['face_threads']} threads, decoded frames): "
                  f"**{s['face_ms_per_frame_512']:.2f} ms/frame** wall, {s['face_cpu_ms_per_frame_512']:.2f} ms "
                  f"CPU; 1 thread {f(s['face_1thread_ms_per_frame_512'])} ms/frame; floor (MediaPipe FaceMesh "
                  f"alone, 1 thread) {s['floor_ms_per_frame_512']:.2f} ms/frame wall, "
                  f"{s['floor_cpu_ms_per_frame_512']:.2f} ms CPU. Target ≤ {TARGET_MS:g} ms/frame: {met}.", ""]
        if s.get("face_mirror_ms_per_frame_512") is not None:
            lines += [f"Mirror-averaged (`preprocess --mirror`): {s['face_mirror_ms_per_frame_512']:.2f} ms/frame, "
                      f"landmark jitter {s['jitter_mirror_512']:.2f} % of the eye distance against "
                      f"{s['jitter_512']:.2f} % for the plain track.", ""]
    if s["transcription_rtf"]:
        lines += ["Transcription real-time factor (wall / CPU): " + ", ".join(
            f"{k} {v:.2f} / {s['transcription_cpu_rtf'][k]:.2f}" for k, v in s["transcription_rtf"].items())
            + (f"; cache speed-up {s['cache_speedup']:.0f}x." if s["cache_speedup"] else "."), ""]
    lines += ["| stage | input | frames | wall ms/frame | CPU ms/frame | jitter % | RTF | CPU RTF | s | speed-up | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rec["rows"]:
        lines.append("| " + " | ".join([r["stage"], r.get("input", ""), f(r.get("frames")), f(r.get("ms_per_frame")),
                                        f(r.get("cpu_ms_per_frame")), f(r.get("jitter")), f(r.get("rtf")), f(r.get("cpu_rtf")),
                                        f(r.get("seconds")), f(r.get("speedup")), r.get("load", "")]) + " |")
    return "\n".join(lines)


def _parts(value) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in str(value).split(",") if p.strip()) if value else PARTS
    bad = [p for p in parts if p not in PARTS]
    if bad:
        from echo_cli.errors import UsageError

        raise UsageError(f"unknown bench part(s) {', '.join(bad)}", fix=f"use --set parts=one of {','.join(PARTS)}")
    return parts


def run(args=None, **kw) -> dict:
    """Bench hook. `args`: the bench CLI's BenchArgs, or a data folder (str/Path), or None.
    Options (--set): data=DIR, parts=face,transcription,cache, threads=N."""
    if args is None or isinstance(args, (str, Path)):
        return measure(args, quick=kw.get("quick", False))
    data = kw.get("data_dir") or args.extra.get("data")
    threads = int(args.extra["threads"]) if args.extra.get("threads") else None
    rec = measure(data, quick=args.quick, parts=_parts(args.extra.get("parts")), threads=threads)
    from echo_cli.bench.common import report

    return report("preprocess", args, rec["rows"], _markdown(rec, args.command), {"summary": rec["summary"]})


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="../shared/data (default: $ECHO_SHARED_DATA)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    ap.add_argument("--threads", type=int, default=None, help="face tracker threads (default: 2 on 2 cores)")
    a = ap.parse_args()
    rec = measure(a.data, quick=a.quick, parts=_parts(a.parts), threads=a.threads)
    print(json.dumps(rec, indent=1, default=float))
    print(_markdown(rec, "python -m echo_cli.bench.preprocess" + (" --quick" if a.quick else "")))


if __name__ == "__main__":
    main()
