"""The batch runner: a manifest in, videos out, on N local worker processes (or Ray).

Scheduling lives in the parent; rendering in workers. Each worker is a `spawn`ed process that
loads the models once and then takes jobs one by one over its own pipe (a per-worker pipe,
not a shared queue: a worker killed while writing to a shared queue can leave its lock held
and hang every other worker). The parent watches the pipes and the process sentinels, so a
worker that dies mid-job (SIGKILL, OOM killer, segfault) costs one attempt of one job: the
job is retried on a fresh worker with exponential backoff and the batch goes on.

Signals: the first SIGINT/SIGTERM stops dispatching, asks workers to stop (SIGTERM: their
in-flight render unwinds and its temp files are removed), kills what has not stopped after a
grace period, removes partial files under each job's lock, writes the report, and raises
`Interrupted` (exit 130). Finished outputs are never touched.
"""
from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import logging
import os
import random
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable

from echo_cli import cancel, log
from echo_cli.batch.jobs import (JobFn, JobResult, WorkerCrashed, checkpoint_id, clean_partials, error_dict,
                                 execute_job, marker_path, render_job)
from echo_cli.batch.locks import LockBusy, OutputLock, lock_path
from echo_cli.batch.manifest import Job, Manifest
from echo_cli.batch.shard import Shard
from echo_cli.errors import EchoError, Interrupted, PartialFailure, UsageError

LOG = log.get("echo_cli.batch.runner")
STOP_GRACE_S = 10.0


@dataclass
class BatchOptions:
    """How to run a manifest. The core never sees Typer objects: the CLI builds this."""
    workers: int = 1                        # local worker processes
    retries: int = 2                        # extra attempts for transient errors (worker crash, I/O)
    backoff: float = 2.0                    # first retry delay in seconds, doubled each attempt
    backoff_max: float = 120.0
    skip_invalid: bool = False              # run the valid rows of a manifest with bad rows
    shard: Shard = field(default_factory=lambda: Shard(0, 1, "none"))
    engine: str = "local"                   # local | ray
    address: str | None = None              # Ray cluster address (None: start a local Ray)
    report: Path | None = None              # JSON Lines report; default beside the manifest
    job_fn: JobFn | str | None = None       # injectable job callable or "module:function"
    progress: bool = True
    threads_per_worker: int | None = None   # torch/OMP threads per worker; default cores // workers
    lock_poll: float = 15.0                 # seconds between looks at a job another process holds
    lock_wait: float = 900.0                # how long to wait for it (a foreign lock goes stale after 600)


@dataclass
class BatchSummary:
    manifest: str
    shard: str
    engine: str
    workers: int
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    invalid: int = 0
    locked: int = 0
    interrupted: int = 0
    retried: int = 0
    wall_s: float = 0.0
    video_s: float = 0.0
    videos_per_min: float = 0.0
    real_time_factor: float | None = None   # wall seconds per second of video produced (< 1: faster)
    report: str | None = None
    failures: list[dict] = field(default_factory=list)
    aborted: dict | None = None             # the error that stopped the batch (model/dependency)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return Interrupted.exit_code
        if self.aborted:
            return int(self.aborted.get("exit_code") or 1)
        # a job still held elsewhere when the wait ran out is not done: a scheduler must run
        # this element again rather than count the job as rendered
        return PartialFailure.exit_code if (self.failed or self.invalid or self.locked) else 0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["exit_code"] = self.exit_code
        return d


def resolve_job_fn(ref: JobFn | str | None) -> JobFn:
    if ref is None:
        return render_job
    if callable(ref):
        return ref
    mod, _, name = str(ref).partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"cannot load job function '{ref}': {e}", fix="use module:function") from e


def _check_report_path(path: Path, manifest) -> None:
    """The report is rewritten from scratch: it may not be the manifest, a job's input (the
    media a dialogue names included) or output, a file the batch keeps beside an output (its
    done marker, its lock), or a folder (all checked before any work)."""
    from echo_cli.errors import OutputError

    taken = {Path(manifest.path).resolve(): "the manifest"}
    for job in manifest.jobs:
        out = Path(job.output).resolve()
        taken.setdefault(out, f"the output of job {job.id}")
        taken.setdefault(marker_path(out), f"the done marker of job {job.id}")
        taken.setdefault(lock_path(out), f"the lock file of job {job.id}")
        named = {**job.inputs, **({"dialogue": job.dialogue} if job.dialogue is not None else {}),
                 **{f"{k} (in its dialogue)": v for k, v in job.dialogue_media.items()}}   # read with the manifest
        for name, p in named.items():
            taken.setdefault(Path(p).resolve(), f"the {name} of job {job.id}")
    if path in taken:
        raise OutputError(f"the report would overwrite {taken[path]}", path=path,
                          fix="give --report a new .jsonl file")
    if path.is_dir() or (path.parent.exists() and not path.parent.is_dir()):
        raise OutputError("the report path is a folder or inside a file", path=path,
                          fix="give --report a .jsonl file in an existing folder")


def default_report_path(manifest: Path, shard: Shard) -> Path:
    tag = "" if shard.is_whole else f".shard{shard.index}of{shard.count}"
    return manifest.with_name(f"{manifest.stem}{tag}.report.jsonl")


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

class Report:
    """JSON Lines, one line per job outcome, flushed as it happens (a killed run keeps its log),
    and a last line {"type": "summary", ...}."""

    def __init__(self, path: Path):
        from echo_cli.errors import OutputError, from_os_error

        self.path = path
        try:                    # opened before any job runs: a report that cannot be written stops nothing
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "w", encoding="utf-8")
        except OSError as e:
            raise from_os_error(e) or OutputError(
                f"the report cannot be written ({e.strerror})", path=path,
                fix="give --report a .jsonl path in a writable folder") from None

    def job(self, r: JobResult | dict) -> None:
        d = r.to_dict() if isinstance(r, JobResult) else dict(r)
        self._f.write(json.dumps({"type": "job", **d}, default=str) + "\n")
        self._f.flush()

    def summary(self, s: BatchSummary) -> None:
        self._f.write(json.dumps({"type": "summary", **s.to_dict()}, default=str) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class Progress:
    """Rich bar on a terminal; plain lines (no escape codes) for render-farm logs."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.n = 0
        self._bar = None
        if enabled and total and not log.plain_progress() and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, \
                TextColumn, TimeElapsedColumn
            from rich.console import Console

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task("batch", total=total)
            self._bar.start()

    def update(self, r: JobResult) -> None:
        self.n += 1
        msg = f"[{self.n}/{self.total}] {r.status:<8} {r.id}"
        if r.status == "done":
            msg += f" ({r.timings.get('total', 0):.1f}s)"
        if r.error and r.status in ("failed", "invalid", "locked"):
            msg += f": {r.error.get('message')}"
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{r.status} {r.id}")
            if r.status == "failed":
                self._bar.console.print(msg)
        else:
            LOG.info("%s", msg)

    def note_wait(self, job: Job, err: dict) -> None:
        text = f"{job.id}: {err.get('message')}; waiting for it to finish"
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            LOG.info("%s", text)

    def note_retry(self, job: Job, attempt: int, delay: float, err: dict) -> None:
        text = f"retry {attempt} of {job.id} in {delay:.1f}s after {err.get('type')}: {err.get('message')}"
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            LOG.warning("%s", text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------------------
# Worker process
# --------------------------------------------------------------------------------------

class _Terminate(BaseException):
    """Raised in a worker by SIGTERM: unwinds the render (temp files removed) and exits."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise _Terminate()


def _warm_up() -> None:
    """Load models once per worker, when the render API offers a hook for it."""
    try:
        api = importlib.import_module("echo_cli.api.render")
    except ImportError:
        return
    for name in ("warmup", "load_models", "preload"):
        fn = getattr(api, name, None)
        if callable(fn):
            fn()
            return


def _worker_main(conn: Connection, job_fn_ref: Any, ckpt: str, name: str, threads: int, warm: bool,
                 quiet: bool = True) -> None:
    # Own process group: a terminal's Ctrl-C reaches only the parent, which coordinates the stop,
    # and the parent can kill a dead worker's orphans (ffmpeg) with one killpg.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # a batch killed outright cannot stop its workers: each stops its render itself
    cancel.leave_with_parent(os.getppid(), unwind_s=STOP_GRACE_S)
    # results travel over `conn`; whatever a library prints goes to stderr, never into the
    # parent's stdout (one JSON object under --json)
    sys.stdout.flush()
    os.dup2(2, 1)
    if quiet:           # a spawned process starts with default warning filters
        from echo_cli.log import quiet_third_party

        quiet_third_party()
    if "torch" in sys.modules:                          # spawned children normally import it later,
        sys.modules["torch"].set_num_threads(threads)   # reading OMP_NUM_THREADS set by the parent
    job_fn = resolve_job_fn(job_fn_ref)
    try:
        if warm:
            _warm_up()
        conn.send(("ready", name))
        while True:
            msg = conn.recv()
            if msg is None:
                return
            job, attempt = msg
            res = execute_job(job, job_fn, ckpt=ckpt, worker=name, attempt=attempt)
            conn.send(("result", res.to_dict()))
    except (_Terminate, EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    except Exception as e:  # noqa: BLE001 - warm-up failure: tell the parent, which fails the batch
        try:
            conn.send(("fatal", error_dict(e)))
        except OSError:
            pass


class _Worker:
    def __init__(self, ctx, name: str, job_fn_ref: Any, ckpt: str, threads: int, warm: bool):
        self.name = name
        self.conn, child = ctx.Pipe(duplex=True)
        quiet = not logging.getLogger("echo_cli").isEnabledFor(logging.DEBUG)      # the parent's --verbose
        self.proc = ctx.Process(target=_worker_main, args=(child, job_fn_ref, ckpt, name, threads, warm, quiet),
                                name=f"echo-batch-{name}", daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.current: tuple[Job, int] | None = None

    def send(self, job: Job, attempt: int) -> None:
        self.current = (job, attempt)
        try:
            self.conn.send((job, attempt))
        except OSError:
            pass            # died just now: the sentinel reports it and the job counts as crashed

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass


# --------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------

class _Stop:
    def __init__(self):
        self.requested = 0
        self.signum: int | None = None

    def __call__(self, signum, frame):  # noqa: ARG002
        self.requested += 1
        self.signum = signum
        if self.requested == 1:
            LOG.warning("%s: finishing nothing new; stopping in-flight jobs (again to kill now)",
                        signal.Signals(signum).name)


class _Breaker:
    """Stops a batch that cannot succeed: when two jobs in a row fail with the same model or
    dependency error (no checkpoint, no ffmpeg), every other job would fail the same way after
    paying for its preprocessing. Bad input never trips it (that is per job)."""

    def __init__(self, threshold: int = 2):
        self.threshold = threshold
        self.key: tuple | None = None
        self.count = 0
        self.error: dict | None = None

    def see(self, r: JobResult) -> None:
        e = r.error or {}
        if r.status == "failed" and e.get("kind") in ("model", "dependency") and _shared(e):
            key = (e.get("kind"), e.get("message"), e.get("path"))
            self.count = self.count + 1 if key == self.key else 1
            self.key = key
            if self.count >= self.threshold and self.error is None:
                self.error = dict(e)
                LOG.error("stopping the batch: %d jobs in a row failed with: %s", self.count, e.get("message"))
        elif r.status in ("done", "failed"):
            self.key, self.count = None, 0


def _shared(error: dict) -> bool:
    """Does the error concern what every job uses? A model error about a checkpoint that a
    row's dialogue names is that row's input: the other jobs load another model."""
    if error.get("kind") != "model" or not error.get("path"):
        return True
    from echo_cli.api.render import default_checkpoint     # batch talks to the api layer only

    where = str(error["path"]).split(" (", 1)[0].rsplit(":", 1)[0]      # "file:line (field: path)" forms too
    try:
        return Path(where).resolve() == default_checkpoint().resolve()
    except OSError:
        return False


def _delay(opts: BatchOptions, attempt: int) -> float:
    base = min(opts.backoff * (2 ** (attempt - 1)), opts.backoff_max)
    return base * (0.75 + 0.5 * random.random())       # jitter: retries of many jobs do not align


def _kill_group(pid: int) -> None:
    """Kill what a dead worker left running in its process group (an ffmpeg still writing)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _cleanup_after_death(job: Job, timeout: float = 5.0) -> None:
    """The dead worker's flock is gone: take the lock, remove its temp files, let go."""
    deadline = time.time() + timeout
    while True:
        try:
            with OutputLock(job.output):
                clean_partials(job.output)
            return
        except LockBusy:
            if time.time() > deadline:       # really held by someone else: theirs to clean
                return
            time.sleep(0.1)
        except OSError:
            return


def run_manifest(manifest: Manifest, opts: BatchOptions) -> BatchSummary:
    """Run (this shard of) a validated manifest. Returns the summary; raises SpecError for an
    invalid manifest unless `skip_invalid`, and Interrupted after SIGINT/SIGTERM."""
    if manifest.invalid and not opts.skip_invalid:
        manifest.raise_if_invalid()
    if opts.workers < 1:
        raise UsageError(f"--workers {opts.workers} must be at least 1", fix="e.g. --workers 2")
    if opts.retries < 0:
        raise UsageError("--retries must be >= 0", fix="e.g. --retries 2")
    shard = opts.shard
    jobs = shard.select(manifest.jobs)
    invalid = [p for p in manifest.invalid if p.index % shard.count == shard.index]
    report_path = Path(opts.report or default_report_path(manifest.path, shard)).resolve()
    _check_report_path(report_path, manifest)
    summary = BatchSummary(str(Path(manifest.path).resolve()), shard.label, opts.engine, opts.workers,
                           total=len(jobs) + len(invalid), report=str(report_path))
    report = Report(report_path)
    progress = Progress(summary.total, opts.progress)
    t0 = time.time()

    def record(r: JobResult) -> None:
        report.job(r)
        progress.update(r)
        setattr(summary, r.status, getattr(summary, r.status) + 1)
        if r.status == "done" and r.duration:
            summary.video_s += r.duration
        if r.status in ("failed", "invalid", "locked"):
            summary.failures.append({"id": r.id, "line": r.line, "status": r.status,
                                     "error": (r.error or {}).get("message"),
                                     "kind": (r.error or {}).get("kind"), "path": (r.error or {}).get("path"),
                                     "fix": (r.error or {}).get("fix")})

    for p in invalid:
        record(JobResult(id=p.id or f"line{p.line}", line=p.line, index=p.index, output="", status="invalid",
                         error={"kind": "spec", "message": p.message, "transient": False}))
    LOG.info("batch %s: %d job(s) in shard %s (%s), %d worker(s), engine %s", manifest.path.name, len(jobs),
             shard.label, shard.source, opts.workers, opts.engine)
    if not manifest.n_rows:     # an empty file from a failed export "succeeds" with nothing done: say so
        LOG.warning("%s has no job rows: nothing to render", manifest.path)
    try:
        if opts.engine == "local":
            _run_local(jobs, opts, record, summary, progress)
        elif opts.engine == "ray":
            from echo_cli.batch.ray_engine import run_ray

            run_ray(jobs, opts, record, summary, progress)
        else:
            raise UsageError(f"unknown engine '{opts.engine}'", fix="use --engine local or --engine ray")
    finally:
        summary.wall_s = time.time() - t0
        produced = summary.done
        summary.videos_per_min = produced / (summary.wall_s / 60.0) if summary.wall_s > 0 else 0.0
        summary.real_time_factor = (summary.wall_s / summary.video_s) if summary.video_s > 0 else None
        report.summary(summary)
        report.close()
        progress.close()
    if summary.aborted:
        a = summary.aborted
        err = EchoError(f"batch stopped: every job would fail: {a.get('message')} "
                        f"({summary.failed} job(s) failed or not attempted)", path=a.get("path"),
                        fix=a.get("fix") or "run `echo-cli doctor`")
        err.exit_code = int(a.get("exit_code") or 1)
        err.kind = a.get("kind") or "error"
        err.details = summary.to_dict()     # --json: the summary beside the error, as for a stop
        raise err
    if summary.interrupted:
        err = Interrupted(f"stopped after {summary.done} done; {summary.interrupted} not finished (in flight, "
                          "discarded, or not started)", path=manifest.path,
                          fix="rerun the same command to finish the remaining jobs")
        err.details = summary.to_dict()     # --json: the summary, as a finished batch prints it
        raise err
    return summary


def _run_local(jobs: list[Job], opts: BatchOptions, record: Callable[[JobResult], None],
               summary: BatchSummary, progress: Progress) -> None:
    if not jobs:
        return
    ctx = mp.get_context("spawn")
    n_workers = min(opts.workers, len(jobs))
    threads = opts.threads_per_worker or max(1, (os.cpu_count() or 1) // n_workers)
    ckpt = checkpoint_id()
    job_fn_ref = opts.job_fn          # a callable must be module-level: spawn pickles it by name
    warm = opts.job_fn is None
    queue: deque[tuple[Job, int, float]] = deque((j, 1, 0.0) for j in jobs)
    workers: list[_Worker] = []
    spawned = 0
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} \
        if _main_thread() else {}
    # Threads for the workers' math libraries are set in the environment they inherit.
    env_backup = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    for k in env_backup:
        os.environ.setdefault(k, str(threads))

    def spawn() -> _Worker:
        nonlocal spawned
        spawned += 1
        return _Worker(ctx, f"{socket.gethostname()}:w{spawned}", job_fn_ref, ckpt, threads, warm)

    breaker = _Breaker()
    held_since: dict[int, float] = {}
    outer_record = record

    def record(r: JobResult) -> None:  # noqa: F811 - the batch's record, plus the breaker
        outer_record(r)
        breaker.see(r)

    try:
        workers = [spawn() for _ in range(n_workers)]
        pending = len(jobs)
        while pending > 0:
            if stop.requested:
                break
            if breaker.error is not None and not any(w.current for w in workers):
                break
            now = time.time()
            # dispatch
            for w in workers:
                if w.ready and w.current is None and queue and breaker.error is None:
                    for _ in range(len(queue)):
                        job, attempt, not_before = queue[0]
                        if not_before <= now:
                            queue.popleft()
                            w.send(job, attempt)
                            break
                        queue.rotate(-1)
            waitables: list[Any] = [w.conn for w in workers] + [w.proc.sentinel for w in workers]
            next_due = min((nb for _, _, nb in queue), default=now + 1.0)
            ready = wait(waitables, timeout=max(0.05, min(1.0, next_due - now)))
            for w in list(workers):
                msg = None
                if w.conn in ready or w.conn.poll():
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                if msg is not None:
                    kind, payload = msg
                    if kind == "ready":
                        w.ready = True
                    elif kind == "fatal":
                        raise_fatal(payload)
                    elif kind == "result":
                        job, attempt = w.current
                        w.current = None
                        res = JobResult(**payload)
                        pending -= _settle(res, job, attempt, opts, queue, record, summary, progress, held_since)
                    continue
                if not w.proc.is_alive():
                    w.proc.join(timeout=1)
                    code = w.proc.exitcode
                    workers.remove(w)
                    _kill_group(w.proc.pid)
                    if w.current is not None:
                        job, attempt = w.current
                        _cleanup_after_death(job)
                        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                        exc = WorkerCrashed(f"worker {w.name} died during the job ({why})")
                        res = JobResult(job.id, job.line, job.index, str(job.output), status="failed",
                                        attempts=attempt, error=error_dict(exc), worker=w.name,
                                        finished=time.time())
                        pending -= _settle(res, job, attempt, opts, queue, record, summary, progress, held_since)
                    elif not w.ready:
                        LOG.warning("worker %s exited before it was ready (%s)", w.name, code)
                    if pending > 0 and not stop.requested:
                        if spawned > n_workers + 2 * len(jobs) * (opts.retries + 1):
                            raise RuntimeError("workers keep dying before taking jobs; see the log above")
                        workers.append(spawn())
        if stop.requested:
            _interrupt(workers, queue, record, stop)
        elif breaker.error is not None:
            summary.aborted = breaker.error
            for job, attempt, _ in queue:
                outer_record(JobResult(job.id, job.line, job.index, str(job.output), status="failed",
                                       attempts=0, finished=time.time(),
                                       error={**breaker.error, "message": f"not attempted: {breaker.error.get('message')}"}))
            queue.clear()
    finally:
        for w in workers:
            w.stop()
        deadline = time.time() + 5
        for w in workers:
            w.proc.join(timeout=max(0.1, deadline - time.time()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=2)
        for s, h in old.items():
            signal.signal(s, h)
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def raise_fatal(payload: dict) -> None:
    from echo_cli.errors import EchoError, ModelError

    kind = payload.get("kind")
    cls = ModelError if kind == "model" else EchoError
    err = cls(f"a worker could not start: {payload.get('message')}", path=payload.get("path"),
              fix=payload.get("fix") or "run `echo-cli doctor`")
    if kind not in (None, "model", "internal"):
        err.exit_code = payload.get("exit_code", 1)
    raise err


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def next_try(res: JobResult, job: Job, attempt: int, opts: BatchOptions, summary: BatchSummary,
             progress: Progress, held_since: dict) -> tuple[int, float] | None:
    """(attempt, not-before time) of the job's next try, or None when `res` is final.
    A transient failure: backoff, up to --retries. A job another live process holds
    (`locked`): looked at again every lock_poll seconds until that process has finished it
    (then it is already done) or left it (then it is ours), for at most lock_wait; a batch
    that only recorded it would exit 0 with the job unrendered if the holder then failed.
    held_since: job index -> when it was first found held (the caller keeps it)."""
    if res.status == "failed" and (res.error or {}).get("transient") and attempt <= opts.retries:
        delay = _delay(opts, attempt)
        progress.note_retry(job, attempt, delay, res.error or {})
        summary.retried += 1
        return attempt + 1, time.time() + delay
    if res.status == "locked":
        if job.index not in held_since:
            held_since[job.index] = time.time()
            progress.note_wait(job, res.error or {})
        if time.time() - held_since[job.index] < opts.lock_wait:
            return attempt, time.time() + opts.lock_poll
        res.error = {**(res.error or {}), "message": f"{(res.error or {}).get('message')}, still after "
                     f"{opts.lock_wait:.0f} s", "fix": "rerun when that process has finished"}
    return None


def _settle(res: JobResult, job: Job, attempt: int, opts: BatchOptions, queue: deque, record,
            summary: BatchSummary, progress: Progress, held_since: dict) -> int:
    """Record a final outcome (returns 1) or requeue the job (returns 0)."""
    again = next_try(res, job, attempt, opts, summary, progress, held_since)
    if again is not None:
        queue.append((job, *again))
        return 0
    record(res)
    return 1


def _interrupt(workers: list[_Worker], queue: deque, record, stop: _Stop) -> None:
    """Stop in-flight renders (SIGTERM, then SIGKILL after a grace period), remove their partial
    files, and record them as interrupted; jobs never started are recorded too (attempts 0),
    so the report has a line for every job and its counts add up to the total."""
    busy = [w for w in workers if w.current is not None]
    for w in busy:
        try:
            os.kill(w.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + STOP_GRACE_S
    for w in busy:
        while w.proc.is_alive() and time.time() < deadline and stop.requested < 2:
            w.proc.join(timeout=0.2)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(timeout=2)
        _kill_group(w.proc.pid)
    for w in busy:
        job, attempt = w.current
        result = None
        try:
            while w.conn.poll():
                kind, payload = w.conn.recv()
                if kind == "result":
                    result = JobResult(**payload)
        except (EOFError, OSError):
            pass
        if result is not None and result.status in ("done", "skipped", "failed"):
            record(result)                          # it finished before the stop reached it
        else:
            _cleanup_after_death(job)
            record(JobResult(job.id, job.line, job.index, str(job.output), status="interrupted",
                             attempts=attempt, worker=w.name, finished=time.time(),
                             error={"kind": "interrupted", "message": "stopped by signal; partial output removed",
                                    "transient": True}))
        w.current = None
    record_not_started([job for job, _, _ in queue], record)
    queue.clear()


def record_not_started(jobs: list[Job], record) -> None:
    for job in jobs:
        record(JobResult(job.id, job.line, job.index, str(job.output), status="interrupted", attempts=0,
                         finished=time.time(), error={"kind": "interrupted", "transient": True,
                                                      "message": "not started: the batch was stopped"}))


def run_batch(manifest_path: str | Path, opts: BatchOptions | None = None, *, allow_outside: bool = False,
              root: str | Path | None = None, output_dir: str | Path | None = None) -> BatchSummary:
    """Load, validate and run a manifest file: the one call the CLI, the bench and tests use."""
    from echo_cli.batch.manifest import load_manifest

    opts = opts or BatchOptions()
    manifest = load_manifest(manifest_path, allow_outside=allow_outside, root=root, output_dir=output_dir)
    return run_manifest(manifest, opts)
