"""Peak memory of a command run in its own process (children included), and the long-render check.

    from echo_cli.bench.memory import run_measured
    stats = run_measured([sys.executable, "-m", "echo_cli", "render", "d.yaml"], timeout=600)
    stats.peak_mb, stats.wall_s, stats.trace      # trace: [(seconds, MB)], downsampled

Why a subprocess: the figure a user cares about is what `echo-cli render` takes on its own
(imports, models, ffmpeg encoders), not what the bench process that launches it has
already allocated. The peak is the sum of the resident sets of the whole process tree
(python + its ffmpeg pipes), sampled by psutil every `interval` s; `ru_maxrss` of the
largest finished child (getrusage(RUSAGE_CHILDREN)) is reported beside it as a check on
the sampling (it cannot miss a short spike, but it sees one process, not the tree).

The long-render check (`python -m echo_cli.bench.memory --minutes 1,10,60`) builds
dialogues of those lengths by looping real media (bench/longform.py), renders each with
`echo-cli render` from an empty cache (preprocessing and transcription included), and
reports each peak, the ratio to the shortest and the growth per minute of video.
`--transcript file` supplies a transcript of the looped speech instead (bench/longform.py)
so an hour-long check does not spend hours in faster-whisper; `--preset draft --size 256`
makes the frame loop cheaper. Neither changes which arrays grow with the length (audio
decode, features, VAD, LCU tracks, mix, mux are all still exercised). Each render's memory
trace is also written live to <work>/<len>min/trace.tsv (seconds, MB now, MB peak so far),
so a render stopped by --timeout still shows where memory went.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from echo_cli import log

logger = log.get("echo_cli.bench.memory")


@dataclass
class RunStats:
    cmd: list[str]
    rc: int | None                      # None: killed at the timeout
    wall_s: float
    cpu_s: float                        # user + system CPU of the finished process tree
    peak_mb: float                      # sampled peak of the summed tree RSS
    peak_pss_mb: float                  # sampled peak of the summed tree PSS (shared pages split)
    max_child_rss_mb: float             # ru_maxrss of the largest finished child (one process)
    samples: int
    timed_out: bool
    stdout: str = ""
    stderr_tail: str = ""
    trace: list[tuple[float, float]] = field(default_factory=list)   # (s since start, tree MB)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("stdout", None)
        return d


from echo_cli.bench.common import tree_rss as _tree_rss  # noqa: E402


def _tree_pss(ps) -> int:
    """Sum of PSS (bytes) over a process and its descendants, from /proc/<pid>/smaps_rollup.
    Why beside the RSS sum: a child forked by a big process (every ffmpeg spawn: fork, then
    exec) shows the parent's whole resident set as its own RSS until it execs, so the RSS
    sum can briefly count the parent twice (measured: a 1 GB parent's forked child reads
    974 MB); PSS splits shared pages between the sharers and counts them once. 0 where
    smaps_rollup is unavailable."""
    import psutil

    total = 0
    try:
        procs = [ps] + ps.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def _downsample(trace: list[tuple[float, float]], keep: int = 240) -> list[tuple[float, float]]:
    """At most `keep` points, each the max of its bucket (a peak must survive)."""
    if len(trace) <= keep:
        return [(round(t, 2), round(m, 1)) for t, m in trace]
    step = len(trace) / keep
    out = []
    for i in range(keep):
        bucket = trace[int(i * step): int((i + 1) * step)] or trace[-1:]
        t, m = max(bucket, key=lambda x: x[1])
        out.append((round(t, 2), round(m, 1)))
    return out


def run_measured(cmd: list[str], *, env: dict | None = None, cwd: str | Path | None = None,
                 timeout: float | None = None, interval: float = 0.2, nice: int = 0,
                 live: str | Path | None = None) -> RunStats:
    """Run `cmd`, sampling the RSS of its process tree; stdout is kept, stderr's tail too.
    live: a file that gets one "seconds<TAB>MB" line per second as the run goes (an hour-long
    render that is stopped early still leaves its memory trace)."""
    import resource

    import psutil

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.perf_counter()
        pre = (lambda: os.nice(nice)) if nice else None
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL,
                                preexec_fn=pre)
        ps = psutil.Process(proc.pid)
        trace: list[tuple[float, float]] = []
        peak = 0
        peak_pss = 0
        timed_out = False
        live_f = open(live, "w", buffering=1) if live else None
        last_live = -1.0
        try:
            while proc.poll() is None:
                rss = _tree_rss(ps)
                peak = max(peak, rss)
                peak_pss = max(peak_pss, _tree_pss(ps))
                trace.append((time.perf_counter() - t0, rss / 2 ** 20))
                if live_f is not None and trace[-1][0] - last_live >= 1.0:
                    last_live = trace[-1][0]
                    live_f.write(f"{trace[-1][0]:.1f}\t{trace[-1][1]:.1f}\t{peak / 2 ** 20:.1f}\n")
                if timeout is not None and time.perf_counter() - t0 > timeout:
                    timed_out = True
                    break
                time.sleep(interval)
        finally:
            if live_f is not None:
                live_f.close()
            if proc.poll() is None:          # timeout or an exception here: stop the tree we started
                for child in ps.children(recursive=True) if ps.is_running() else []:
                    try:
                        child.kill()
                    except psutil.Error:
                        pass
                proc.kill()
            rc = proc.wait()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode("utf-8", "replace")
        err = err_f.read().decode("utf-8", "replace")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return RunStats(cmd=[str(c) for c in cmd], rc=None if timed_out else rc, wall_s=wall, cpu_s=cpu,
                    peak_mb=peak / 2 ** 20, peak_pss_mb=peak_pss / 2 ** 20,
                    max_child_rss_mb=r1.ru_maxrss / 1024, samples=len(trace),
                    timed_out=timed_out, stdout=stdout, stderr_tail=err[-3000:], trace=_downsample(trace))


def render_command(spec: str | Path, *, preset: str | None = None, size: int | None = None,
                   output: str | Path | None = None, checkpoint: str | Path | None = None) -> list[str]:
    """The `echo-cli render` command line (as `python -m echo_cli`, the same entry point)."""
    cmd = [sys.executable, "-m", "echo_cli", "--json", "--no-progress", "render", str(spec)]
    if preset:
        cmd += ["--preset", preset]
    if size:
        cmd += ["--size", str(int(size))]
    if output:
        cmd += ["--output", str(output)]
    if checkpoint:
        cmd += ["--checkpoint", str(checkpoint)]
    return cmd


def bench_env(cache_dir: str | Path, extra: dict | None = None) -> dict:
    """Environment for a measured run: its own cache dir, the Whisper model already joined
    (joining the packaged model is an install step, not part of rendering new inputs)."""
    env = dict(os.environ)
    env["ECHO_CACHE_DIR"] = str(cache_dir)
    if "ECHO_WHISPER_MODEL_DIR" not in env:
        try:
            from echo_cli.features.audio import whisper_model_dir

            env["ECHO_WHISPER_MODEL_DIR"] = str(whisper_model_dir())
        except Exception as e:   # no model: the render then reports it itself
            logger.warning("whisper model not available: %s", e)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of peak MB against video minutes."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return None if den == 0 else sum((p[0] - mx) * (p[1] - my) for p in points) / den


def long_render_memory(minutes: list[float], *, data: Path | None = None, preset: str = "default",
                       size: int = 512, user: str = "audio", timeout: float = 1500, work: Path | None = None,
                       keep_outputs: bool = False, nice: int = 0, checkpoint: Path | None = None,
                       transcript: str = "faster-whisper") -> list[dict]:
    """Build and render one looped dialogue per length; one row per length. Without a
    checkpoint and no trained default installed, an untrained one with the default
    architecture is used (memory and speed do not depend on the weights)."""
    from echo_cli.api.render import default_checkpoint
    from echo_cli.bench.longform import build_dialogue

    rows = []
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="echo-longform-"))
    work.mkdir(parents=True, exist_ok=True)
    if checkpoint is None and not default_checkpoint().is_file():
        from echo_cli.bench.end_to_end import timing_checkpoint

        checkpoint = timing_checkpoint(work)
    try:
        for m in minutes:
            d = work / f"{m:g}min"
            spec = build_dialogue(m, d, data=data, user=user, transcript=transcript)
            cache = d / "cache"
            import shutil

            shutil.rmtree(cache, ignore_errors=True)     # from an empty cache, even after a killed run
            stats = run_measured(render_command(spec, preset=preset, size=size, checkpoint=checkpoint),
                                 env=bench_env(cache),
                                 timeout=timeout, nice=nice, live=d / "trace.tsv")
            res = {}
            try:
                res = json.loads(stats.stdout.strip().splitlines()[-1]) if stats.stdout.strip() else {}
            except json.JSONDecodeError:
                pass
            row = {"minutes": m, "user": user, "preset": preset, "size": size, "transcript": transcript,
                   "rc": stats.rc,
                   "checkpoint": str(checkpoint or default_checkpoint()),
                   "timed_out": stats.timed_out, "wall_s": round(stats.wall_s, 1), "cpu_s": round(stats.cpu_s, 1),
                   "peak_mb": round(stats.peak_mb, 1), "peak_pss_mb": round(stats.peak_pss_mb, 1),
                   "max_child_rss_mb": round(stats.max_child_rss_mb, 1),
                   "rtf": round(stats.wall_s / (m * 60), 3), "frames": res.get("frames"),
                   "error": "" if stats.rc == 0 else stats.stderr_tail.strip().splitlines()[-1:] or "",
                   "trace": stats.trace}
            if isinstance(row["error"], list):
                row["error"] = row["error"][0] if row["error"] else ""
            logger.info("long render %s min: peak %.0f MB, %.0f s, rc %s", m, stats.peak_mb, stats.wall_s, stats.rc)
            rows.append(row)
            if not keep_outputs:
                for p in d.glob("*.mp4"):
                    p.unlink(missing_ok=True)
                for p in d.glob(".*.echo-*"):         # a render stopped by the timeout leaves its temp dirs
                    shutil.rmtree(p, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        if own and not keep_outputs:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    # the ratio to the shortest finished run, for each peak measure: the tree RSS sum can
    # count a big process twice while it forks ffmpeg (see _tree_pss), so the issue's
    # "within 10 %" is judged on the largest process and the PSS sum as well
    for key, name in (("peak_mb", "vs_first"), ("max_child_rss_mb", "vs_first_process"),
                      ("peak_pss_mb", "vs_first_pss")):
        base = next((r[key] for r in rows if r["rc"] == 0 and r[key]), None)
        for r in rows:
            r[name] = round(r[key] / base, 3) if base and r["rc"] == 0 else None
    return rows


def markdown(rows: list[dict], command: str) -> str:
    from echo_cli.bench.common import machine, markdown_table

    ok = [(r["minutes"], r["peak_mb"]) for r in rows if r["rc"] == 0]
    slope = slope_mb_per_min(ok)
    m = machine()
    cols = [("minutes", "video minutes"), ("user", "user input"), ("preset", "preset"), ("size", "px"),
            ("transcript", "transcript"), ("frames", "frames"), ("peak_mb", "peak MB (tree RSS)"),
            ("peak_pss_mb", "peak MB (tree PSS)"),
            ("max_child_rss_mb", "largest process MB"), ("vs_first", "peak / shortest"),
            ("vs_first_process", "largest process / shortest"), ("vs_first_pss", "PSS / shortest"), ("wall_s", "wall s"),
            ("rtf", "RTF"), ("rc", "exit")]
    lines = [f"Command: `{command}`", "", markdown_table(rows, cols), ""]
    if slope is not None:
        lines.append(f"Growth: {slope:.1f} MB per minute of video (least squares over the finished runs).")
    lines.append(f"Machine: {m['cpu']}, {m['affinity']} cores, load {m['load_1min']} at the end, git {m['git']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    import argparse

    from echo_cli.bench.common import BenchArgs, report

    ap = argparse.ArgumentParser(description="peak memory of 1/10/60-minute looped-media renders")
    ap.add_argument("--minutes", default="1,10,60")
    ap.add_argument("--data", default=None, help="../shared/data (default: $ECHO_SHARED_DATA)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--user", choices=("audio", "video", "none"), default="audio",
                    help="the user as looped speech only, or also a looped low-res face video")
    ap.add_argument("--transcript", choices=("faster-whisper", "file"), default="faster-whisper",
                    help="faster-whisper: the render transcribes the long tracks; file: a transcript of "
                         "the looped speech is supplied (bench/longform.py), the rest of the render unchanged")
    ap.add_argument("--timeout", type=float, default=1500, help="per render, seconds")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="model (default: the installed one, else untrained, timing only)")
    ap.add_argument("--work", default=None, help="folder for the built media (default: temp, removed)")
    ap.add_argument("--out", default=None, help="JSON result")
    ap.add_argument("--doc", default=None, help="Markdown file whose bench:memory section is updated")
    ap.add_argument("--history", default=None)
    a = ap.parse_args(argv)
    minutes = [float(x) for x in a.minutes.split(",")]
    rows = long_render_memory(minutes, data=Path(a.data) if a.data else None, preset=a.preset, size=a.size,
                              user=a.user, timeout=a.timeout, work=Path(a.work) if a.work else None, nice=a.nice,
                              checkpoint=Path(a.checkpoint) if a.checkpoint else None, transcript=a.transcript)
    command = "python -m echo_cli.bench.memory " + " ".join(argv if argv is not None else sys.argv[1:])
    args = BenchArgs(out=Path(a.out) if a.out else None, doc=Path(a.doc) if a.doc else None,
                     history=Path(a.history) if a.history else None, command=command.strip())
    ok = [(r["minutes"], r["peak_mb"]) for r in rows if r["rc"] == 0]
    table_rows = [{k: v for k, v in r.items() if k != "trace"} for r in rows]
    rec = report("memory", args, table_rows, markdown(rows, args.command),
                 {"traces": {str(r["minutes"]): r["trace"] for r in rows},
                  "slope_mb_per_min": slope_mb_per_min(ok)})
    print(json.dumps({k: v for k, v in rec.items() if k != "traces"}, indent=1, default=str))
    return rec


if __name__ == "__main__":
    main()
