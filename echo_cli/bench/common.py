"""Shared benchmark machinery: timers, peak memory, the H.264 "floor", result files.

Every bench target is a module `echo_cli.bench.<target>` with `run(args: BenchArgs) -> dict`
(`echo-cli bench <target>` dispatches to it). A target measures, then calls `report(...)`,
which writes the JSON result, a Markdown table into its own section of docs/performance.md
(between `<!-- bench:<target> -->` markers, so targets do not overwrite each other), and
appends one JSON line to the history file (`$ECHO_CACHE_DIR/bench/history.jsonl` unless
given), so numbers can be compared across commits and machines.

The floor: a plain ffmpeg libx264 encode (VideoWriter, same crf/preset) of the same number
of frames at the same size, measured in the same run, so a ratio "ours / floor" is
meaningful on any machine, however loaded.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from echo_cli import __version__, log

logger = log.get("echo_cli.bench.common")
REPO = Path(__file__).resolve().parents[2]
DOC_DEFAULT = REPO / "docs" / "performance.md"


@dataclass
class BenchArgs:
    """What `echo-cli bench` passes to a target (targets ignore what they do not use)."""
    frames: int | None = None            # frames per measurement (target default when None)
    sizes: tuple[int, ...] | None = None  # frame sizes (px) to measure
    out: Path | None = None              # JSON result file
    doc: Path | None = DOC_DEFAULT       # Markdown doc to update (None: do not touch docs)
    history: Path | None = None          # JSON-lines history (default under the cache dir)
    quick: bool = False                  # smallest meaningful run (CI smoke)
    long_seconds: float | None = None    # long-render memory check (targets that support it)
    extra: dict = field(default_factory=dict)   # --set key=value pairs
    command: str = ""                    # the command line, written beside the numbers


# ---------------------------------------------------------------- timing and memory
def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (ffmpeg)."""
    import resource
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class Timer:
    """`with Timer() as t: ...; t.seconds` (wall) and `t.cpu` (CPU seconds of this process and
    its children that finished inside the block: load-independent, unlike wall time on a
    shared machine)."""

    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        self.c0 = cpu_seconds()
        self.seconds = self.cpu = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = cpu_seconds() - self.c0


def tree_rss(proc) -> int:
    """RSS of a process and all its children (ffmpeg encoders included), bytes."""
    import psutil
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        procs = [proc]
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakMemory:
    """Peak resident memory of this process plus its children (ffmpeg encoders included),
    sampled every `interval` s in a thread: `with PeakMemory() as m: ...; m.peak_mb`.
    (Sparse sampling on purpose: each sample walks the process tree while holding the GIL,
    which would slow the measured work; memory of a streaming render is flat anyway.)"""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        import psutil
        me = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(me))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        import psutil
        self.start = tree_rss(psutil.Process())
        self.peak = self.start
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2 ** 20


def encode_frames(frames: Iterable[np.ndarray], size: tuple[int, int], fps: float = 25.0,
                  crf: int = 20, preset: str = "veryfast", path: Path | None = None) -> tuple[Timer, int]:
    """Plain H.264 encode (the floor). Returns (Timer with .seconds/.cpu, frames written)."""
    from echo_cli.media.video_io import VideoWriter

    with tempfile.TemporaryDirectory(prefix="echo-bench-") as td:
        out = Path(path) if path else Path(td) / "floor.mp4"
        with Timer() as t:
            with VideoWriter(out, fps, size, crf=crf, preset=preset) as w:
                for f in frames:
                    w.write(f)
        return t, w.n_frames


# ---------------------------------------------------------------- machine facts
def machine() -> dict:
    import psutil
    try:
        from echo_cli.media.ffmpeg import ffmpeg_version
        ffv = ffmpeg_version()
    except Exception:          # the bench still runs; the record says ffmpeg is unknown
        ffv = "unknown"
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip(); break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "ram_gb": round(psutil.virtual_memory().total / 2 ** 30, 1), "python": platform.python_version(),
            "ffmpeg": ffv, "echo_cli": __version__, "git": _git_rev()}


def machine_line(m: dict | None = None) -> str:
    """One sentence for a bench's doc section: when, on what, how loaded (wall times move with load)."""
    import datetime
    m = m or machine()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Run {when}: {m['cpu']}, {m['affinity']} cores, load {m['load_1min']} (1-min average at the end), "
            f"ffmpeg {m['ffmpeg']}, git {m['git']}.")


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty=+changes"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------- results
def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """columns: (key, header) pairs."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)
    body = ["| " + " | ".join(fmt(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep] + body)


def default_history() -> Path:
    from echo_cli.hashing import cache_root

    return cache_root() / "bench" / "history.jsonl"


def append_history(record: dict | None, path: Path | None = None) -> Path:
    """Append one JSON line (append-only; a line is written with one write call). record None:
    only check that the file can be appended to (before a bench spends minutes measuring)."""
    from echo_cli.errors import OutputError

    path = Path(path) if path else default_history()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            if record is not None:
                f.write(json.dumps(record, default=str) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write the bench history: {e.strerror or e}", path=path,
                          fix="give --history a .jsonl file in a writable folder") from None
    return path


def update_doc_section(doc: Path, target: str, markdown: str) -> None:
    """Replace (or append) the section between `<!-- bench:target -->` markers in `doc`."""
    from echo_cli.io_atomic import write_text

    start, end = f"<!-- bench:{target} -->", f"<!-- /bench:{target} -->"
    text = doc.read_text() if doc.is_file() else "# Performance\n\nNumbers from `echo-cli bench`.\n"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        a = text.index(start); b = text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_text(doc, text if text.endswith("\n") else text + "\n")
    os.chmod(doc, 0o644)


def report(target: str, args: BenchArgs, rows: list[dict], markdown: str, extra: dict | None = None) -> dict:
    """Write JSON (args.out), the doc section (args.doc) and the history line; return the record."""
    from echo_cli.io_atomic import write_text

    record = {"target": target, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": args.command,
              "machine": machine(), "rows": rows, **(extra or {})}
    if args.out:
        write_text(args.out, json.dumps(record, indent=2, default=str) + "\n")
    if args.doc:
        update_doc_section(Path(args.doc), target, markdown)
    record["history"] = str(append_history(record, args.history))
    return record


def shared_data() -> Path | None:
    env = os.environ.get("ECHO_SHARED_DATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


def record_as_dict(args: BenchArgs) -> dict:
    d = asdict(args)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
