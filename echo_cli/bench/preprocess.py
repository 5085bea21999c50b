"""`echo-cli bench preprocess` (or `python -m echo_cli.bench.preprocess`): preprocessing speed.

Three measurements on ../shared/data, each with wall-clock and CPU time (CPU seconds of
this process: on a shared, loaded machine wall time depends on the neighbours):
  face track     ms/frame of track_face on 512x512 clips (clips/d12, d11, d10): MediaPipe
                 face mesh (478 landmarks) + One-Euro + pose fit + crop boxes, on decoded
                 frames; and the same from the file (decode included)
  transcription  real-time factor (processing seconds / audio seconds) of faster-whisper
                 and WhisperX on the Whisper base model, int8 CPU (model load excluded)
  cache          preprocess_folder on a few clips into an empty cache, then again:
                 first / second wall time = the cache speed-up
Self-contained: `measure(data_dir)` returns the record; `run(args)` is the bench CLI hook.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from echo_cli import log

logger = log.get("echo_cli.bench.preprocess")

FACE_CLIPS = ("clips/d12.mp4", "clips/d11.mp4", "clips/d10.mp4")       # 512 x 512
SPEECH = ("audio/RD_Radio31_000.wav", "audio/RD_Radio34_002.wav", "audio/RD_Radio36_000.wav")
CACHE_CLIPS = ("talking/grid_lrwp9a.mp4", "talking/grid_pwij3p.mp4", "talking/r3_May_5s.mp4")


class _Clock:
    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def _default_data() -> Path:
    env = os.environ.get("ECHO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def bench_face(data: Path, clips=FACE_CLIPS, max_frames: int | None = None) -> list[dict]:
    from echo_cli.preprocess.face import open_frames, track_face

    rows = []
    for rel in clips:
        frames_it, fps, w, h, _, _ = open_frames(data / rel)
        frames = []
        for f in frames_it:
            frames.append(f)
            if max_frames and len(frames) >= max_frames:
                break
        frames = np.stack(frames)
        track_face(frames[:5], fps=fps, cache=False)                     # warm-up: graph + model load
        with _Clock() as c:
            tr = track_face(frames, fps=fps)
        n = len(frames)
        row = {"stage": "face track (decoded frames)", "input": f"{rel} {w}x{h}", "frames": n,
               "ms_per_frame": 1000 * c.wall / n, "cpu_ms_per_frame": 1000 * c.cpu / n,
               "face_found": float(tr.detected.mean())}
        rows.append(row)
        if max_frames is None:
            with _Clock() as c2:
                track_face(data / rel, cache=False)
            rows.append({"stage": "face track (from file, decode incl.)", "input": f"{rel} {w}x{h}", "frames": n,
                         "ms_per_frame": 1000 * c2.wall / n, "cpu_ms_per_frame": 1000 * c2.cpu / n,
                         "face_found": float(tr.detected.mean())})
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
        for _rel, w in waves:
            with _Clock() as c:
                t = transcribe(w, backend=backend, language="en")
            secs += len(w) / SAMPLE_RATE
            wall += c.wall
            cpu += c.cpu
            words += len(t.words)
        rows.append({"stage": f"transcription {backend}", "input": f"{len(waves)} x 8 s speech",
                     "audio_s": secs, "rtf": wall / secs, "cpu_rtf": cpu / secs, "words": words,
                     "method": t.method})
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
            with _Clock() as c1:
                s1 = preprocess_folder(folder, options=opts)
            with _Clock() as c2:
                s2 = preprocess_folder(folder, options=opts)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    assert not s1["failed"] and len(s2["cached"]) == len(clips), (s1["failed"], s2)
    return [{"stage": "cache: first run", "input": f"{len(clips)} clips (face + audio + whisper)",
             "seconds": c1.wall, "cpu_seconds": c1.cpu},
            {"stage": "cache: second run", "input": f"{len(clips)} clips", "seconds": c2.wall,
             "cpu_seconds": c2.cpu, "speedup": c1.wall / max(c2.wall, 1e-9)}]


def measure(data_dir: str | Path | None = None, quick: bool = False) -> dict:
    """All three measurements; returns {"rows": [...], "summary": {...}}."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data = Path(data_dir) if data_dir else _default_data()
    if not (data / "clips").is_dir():
        from echo_cli.errors import InputError

        raise InputError("shared data folder not found", path=data, fix="set ECHO_SHARED_DATA to ../shared/data")
    face = bench_face(data, FACE_CLIPS[:1] if quick else FACE_CLIPS, max_frames=100 if quick else None)
    tr = bench_transcription(data, SPEECH[:1] if quick else SPEECH,
                             ("faster-whisper",) if quick else ("faster-whisper", "whisperx"))
    cache = bench_cache(data, CACHE_CLIPS[:2] if quick else CACHE_CLIPS)
    decoded = [r for r in face if r["stage"].startswith("face track (decoded")]
    n = sum(r["frames"] for r in decoded)
    summary = {
        "face_ms_per_frame_512": sum(r["ms_per_frame"] * r["frames"] for r in decoded) / n,
        "face_cpu_ms_per_frame_512": sum(r["cpu_ms_per_frame"] * r["frames"] for r in decoded) / n,
        "transcription_rtf": {r["stage"].split()[-1]: r["rtf"] for r in tr},
        "cache_speedup": cache[-1]["speedup"],
        "load_1min": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    return {"rows": face + tr + cache, "summary": summary}


def _markdown(rec: dict, command: str) -> str:
    s = rec["summary"]
    lines = [f"Command: `{command}` (load average {s['load_1min']} on {s['cores']} cores)", "",
             "| stage | input | ms/frame | CPU ms/frame | RTF | CPU RTF | s | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    f = lambda v: "" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    for r in rec["rows"]:
        lines.append("| " + " | ".join([r["stage"], r.get("input", ""), f(r.get("ms_per_frame")),
                                        f(r.get("cpu_ms_per_frame")), f(r.get("rtf")), f(r.get("cpu_rtf")),
                                        f(r.get("seconds")), f(r.get("speedup"))]) + " |")
    return "\n".join(lines)


def run(args=None, **kw) -> dict:
    """Bench hook. `args`: the bench CLI's BenchArgs, or a data folder (str/Path), or None."""
    if args is None or isinstance(args, (str, Path)):
        return measure(args, quick=kw.get("quick", False))
    data = kw.get("data_dir") or args.extra.get("data")
    rec = measure(data, quick=args.quick)
    from echo_cli.bench.common import report

    return report("preprocess", args, rec["rows"], _markdown(rec, args.command), {"summary": rec["summary"]})


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="../shared/data (default: $ECHO_SHARED_DATA)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rec = measure(a.data, quick=a.quick)
    print(json.dumps(rec, indent=1, default=float))
    print(_markdown(rec, "python -m echo_cli.bench.preprocess" + (" --quick" if a.quick else "")))


if __name__ == "__main__":
    main()
