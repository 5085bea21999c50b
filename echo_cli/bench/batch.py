"""`echo-cli bench batch`: render-farm throughput for 1 and 2 local workers.

Workload: a manifest of N jobs (default 6; 4 with --quick) built from ../shared/data: portraits
s1..s6 as avatars, each with 3 s of real speech (RD_Radio*.wav), draft preset, one dialogue.yaml
per job with its transcript given as an SRT file (so Whisper is not what is measured). The same manifest is run once with `--workers 1` and once with `--workers 2`, each
into a fresh output folder and a fresh cache (cold: preprocessing included, as in a farm that
sees new inputs), through `run_manifest`, i.e. exactly what `echo-cli batch` does.

Reported per worker count:
  videos/min         finished videos per minute of wall time (includes worker start-up and
                     model loading, once per worker)
  real-time factor   wall seconds per second of video produced (< 1: faster than real time)
  speed-up           videos/min relative to 1 worker
  mean job s         mean per-job time inside a worker (hash + lock + render)
`--set jobs=N` and `--set seconds=S` change the workload.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from echo_cli import log
from echo_cli.bench.common import BenchArgs, machine_line, markdown_table, report, shared_data
from echo_cli.errors import InputError

logger = log.get("echo_cli.bench.batch")

SET_OPTIONS = {"jobs": (int, 1, 1000), "seconds": (float, 0.5, 3600.0)}     # --set key=value, checked by the CLI
PORTRAITS = ["s1.jpg", "s2.jpg", "s3.jpg", "s4.jpg", "s5.jpg", "s6.jpg", "s7.jpg", "s8.jpg"]
AUDIO = ["RD_Radio31_000.wav", "RD_Radio34_002.wav", "RD_Radio36_000.wav", "RD_Radio40_000.wav"]


def build_manifest(folder: Path, n_jobs: int, seconds: float) -> Path:
    """N inline jobs over real portraits + real speech clips (cut with ffmpeg into `folder`)."""
    from echo_cli.media.ffmpeg import ffmpeg_exe

    data = shared_data()
    if data is None:
        raise InputError("../shared/data not found", fix="set ECHO_SHARED_DATA to the real media folder")
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, name in enumerate(AUDIO):
        clip = folder / f"speech{i}.wav"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-ss", "0.5", "-t", f"{seconds}",
                        "-i", str(data / "audio" / name), "-ac", "1", "-ar", "16000", str(clip)], check=True)
        clips.append(clip)
    # Transcripts as SRT files (a farm with scripts): the bench measures rendering, not Whisper.
    srt = folder / "words.srt"
    srt.write_text(f"1\n00:00:00,000 --> 00:00:0{min(9, int(seconds))},000\nthis is a short test sentence\n\n")
    rows = []
    for i in range(n_jobs):
        d = folder / f"bench{i:02d}.yaml"
        d.write_text("version: 1\navatar:\n"
                     f"  image: {json.dumps(str(data / 'portraits' / PORTRAITS[i % len(PORTRAITS)]))}\n"
                     f"  audio: {json.dumps(str(clips[i % len(clips)]))}\n"
                     f"transcript:\n  source: file\n  path: {json.dumps(str(srt))}\n"
                     f"output:\n  path: out/bench{i:02d}.mp4\npreset: draft\nseed: {i}\n")
        rows.append({"id": f"bench{i:02d}", "dialogue": d.name})
    m = folder / "bench.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def measure(manifest: Path, workers: int, work: Path) -> dict:
    """Run the manifest with `workers` into fresh outputs and a fresh cache; return the numbers."""
    from echo_cli.batch.manifest import load_manifest
    from echo_cli.batch.runner import BatchOptions, run_manifest

    out = manifest.parent / "out"
    shutil.rmtree(out, ignore_errors=True)
    cache = work / f"cache-w{workers}"
    shutil.rmtree(cache, ignore_errors=True)
    old = os.environ.get("ECHO_CACHE_DIR")
    os.environ["ECHO_CACHE_DIR"] = str(cache)
    try:
        m = load_manifest(manifest, allow_outside=True)
        s = run_manifest(m, BatchOptions(workers=workers, retries=0, progress=False,
                                         report=work / f"report-w{workers}.jsonl"))
    finally:
        if old is None:
            os.environ.pop("ECHO_CACHE_DIR", None)
        else:
            os.environ["ECHO_CACHE_DIR"] = old
    recs = [json.loads(x) for x in (work / f"report-w{workers}.jsonl").read_text().splitlines()]
    jobs = [r for r in recs if r.get("type") == "job" and r["status"] == "done"]
    mean_job = sum(r["timings"].get("total", 0.0) for r in jobs) / max(1, len(jobs))
    if s.failed:
        logger.warning("%d job(s) failed in the %d-worker run: %s", s.failed, workers, s.failures[:3])
    return {"workers": workers, "jobs": s.total, "done": s.done, "failed": s.failed, "wall_s": round(s.wall_s, 2),
            "video_s": round(s.video_s, 2), "videos_per_min": round(s.videos_per_min, 2),
            "real_time_factor": round(s.real_time_factor, 3) if s.real_time_factor else None,
            "mean_job_s": round(mean_job, 2)}


def run(args: BenchArgs | None = None) -> dict:
    args = args or BenchArgs(doc=None)
    n_jobs = int(args.extra.get("jobs", 4 if args.quick else 6))
    seconds = float(args.extra.get("seconds", 3.0))
    work = Path(tempfile.mkdtemp(prefix="echo-bench-batch-"))
    try:
        manifest = build_manifest(work / "jobs", n_jobs, seconds)
        rows = [measure(manifest, w, work) for w in (1, 2)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["videos_per_min"] or 0.0
    for r in rows:
        r["speedup"] = round(r["videos_per_min"] / base, 2) if base else None
    cols = [("workers", "workers"), ("jobs", "jobs"), ("done", "done"), ("wall_s", "wall s"),
            ("video_s", "video s"), ("videos_per_min", "videos/min"), ("real_time_factor", "real-time factor"),
            ("speedup", "speed-up"), ("mean_job_s", "mean job s")]
    md = (f"Command: `{args.command or 'echo-cli bench batch'}`\n\nWorkload: {n_jobs} jobs, {seconds:g} s of real speech each, draft preset, cold cache per run.\n\n"
          + markdown_table(rows, cols) + "\n\n" + machine_line())
    return report("batch", args, rows, md, {"jobs": n_jobs, "seconds": seconds})


if __name__ == "__main__":     # python -m echo_cli.bench.batch  (prints the JSON record)
    import argparse

    argparse.ArgumentParser(prog="python -m echo_cli.bench.batch",        # --help, not a whole bench
                            description="the batch bench without touching the docs (echo-cli bench batch "
                                        "--no-doc does the same); prints its JSON record").parse_args()
    log.setup(0)
    print(json.dumps(run(BenchArgs(doc=None, command="python -m echo_cli.bench.batch")), indent=2, default=str))
