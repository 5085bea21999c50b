"""One job, run idempotently: hash, done marker, lock, partial-file clean-up, error classes.

A job is *done* when its output exists and the marker `<output>.echo.json` beside it holds
the job's hash and the output's size. The hash covers the content of every input file, the
job's settings, the tool version and the checkpoint, so editing an input or switching the
checkpoint re-renders exactly the affected jobs and nothing else.

Order of writes (why a crash at any point is safe): the output is renamed into place by the
renderer (atomic), then the marker is written atomically. A crash before the marker leaves an
output without marker: not done, re-rendered and atomically replaced. A crash mid-render
leaves only a hidden `.<stem>.*.part.mp4` temp file, removed by the next holder of the lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from echo_cli import __version__, io_atomic, log
from echo_cli.batch.locks import LockBusy, OutputLock
from echo_cli.batch.manifest import Job
from echo_cli.errors import EchoError, InputError, OutputError

LOG = log.get("echo_cli.batch.jobs")
MARKER_SUFFIX = ".echo.json"
MARKER_VERSION = 1
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"

JobFn = Callable[[Job], "dict | None"]


# --------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------

from echo_cli.hashing import file_sha256  # noqa: E402,F401  (memoised per worker)


def checkpoint_id() -> str:
    """Hash of the model files a render may load: every bundled checkpoint (weights + JSON) and
    $ECHO_CHECKPOINT when set. A retrained or swapped model re-renders every job."""
    h = hashlib.sha256()
    files = sorted(p for p in CHECKPOINT_DIR.glob("*") if p.suffix in (".safetensors", ".json"))
    env = os.environ.get("ECHO_CHECKPOINT")
    if env:
        files.append(Path(env))
        files.append(Path(env).with_suffix(".json"))
    for p in files:
        if p.is_file():
            h.update(p.name.encode())
            h.update(file_sha256(p).encode())
    return h.hexdigest()[:16]


def _dialogue_files(dialogue: Path) -> dict[str, Path]:
    """Files a dialogue.yaml refers to (media, transcript, checkpoint): their content is in the hash."""
    from echo_cli.api.render import load_spec     # batch talks to the api layer only

    spec = load_spec(dialogue)
    return {k: Path(v) for k, v in spec.media_paths().items() if Path(v).is_file()}


def job_hash(job: Job, tool_version: str = __version__, ckpt: str | None = None) -> str:
    files = dict(job.inputs)
    if job.dialogue is not None:
        files["dialogue"] = job.dialogue
        files.update({f"dialogue:{k}": v for k, v in _dialogue_files(job.dialogue).items()})
    try:
        content = {k: file_sha256(v) for k, v in sorted(files.items())}
    except OSError as e:
        raise InputError(f"cannot read input: {e.strerror}", path=e.filename,
                         fix="check that the file exists and is readable") from e
    payload = {"v": MARKER_VERSION, "tool": tool_version, "checkpoint": ckpt or checkpoint_id(),
               "settings": job.settings_dict(), "files": content}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------------------
# Done markers and partial files
# --------------------------------------------------------------------------------------

def marker_path(output: Path) -> Path:
    return output.with_name(output.name + MARKER_SUFFIX)


def read_marker(output: Path) -> dict | None:
    try:
        d = json.loads(marker_path(output).read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def is_done(output: Path, h: str) -> bool:
    m = read_marker(output)
    if not m or m.get("hash") != h:
        return False
    try:
        return output.stat().st_size == m.get("size") and output.stat().st_size > 0
    except OSError:
        return False


def write_marker(output: Path, h: str, job: Job, extra: dict | None = None) -> None:
    d = {"version": MARKER_VERSION, "hash": h, "job": job.id, "output": str(output),
         "size": output.stat().st_size, "tool": __version__, "finished": time.time(), **(extra or {})}
    io_atomic.write_text(marker_path(output), json.dumps(d, indent=1, default=str))


def staging_dir(output: Path) -> Path:
    """Private folder where the render API writes a batch job's output and its intermediates
    (`encode` puts its temp folder next to the output): one rmtree removes all of a killed job."""
    return output.with_name(f".{output.name}.echo-job")


def partial_files(output: Path) -> list[Path]:
    """Leftovers of an interrupted job: io_atomic temp siblings of the output and its marker
    (`.<stem>.XXXXXXXX.part<suffix>`) and the job's staging folder."""
    if not output.parent.is_dir():
        return []
    pats = [re.compile(rf"^\.{re.escape(output.stem)}\.[A-Za-z0-9_]{{8}}\.part"),
            re.compile(rf"^\.{re.escape(output.name + '.echo')}\.[A-Za-z0-9_]{{8}}\.part"),
            re.compile(rf"^{re.escape(staging_dir(output).name)}$")]
    return [p for p in output.parent.iterdir() if any(r.match(p.name) for r in pats)]


def clean_partials(output: Path) -> int:
    """Remove leftovers of a killed render. Call only while holding the output's lock."""
    n = 0
    for p in partial_files(output):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    if n:
        LOG.info("removed %d partial file(s) of %s left by an interrupted render", n, output.name)
    return n


# --------------------------------------------------------------------------------------
# Errors: permanent (bad input: retrying cannot help) vs transient (retry with backoff)
# --------------------------------------------------------------------------------------

class WorkerCrashed(Exception):
    """The worker process died mid-job (OOM killer, SIGKILL, segfault in a native library)."""


TRANSIENT = (WorkerCrashed, TimeoutError, ConnectionError, MemoryError, BlockingIOError, InterruptedError)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, EchoError):
        return False                # SpecError/InputError/ModelError/...: the input is the problem
    if isinstance(exc, TRANSIENT):
        return True
    # I/O hiccups (NFS EIO, ESTALE) are worth a retry; a missing file is not.
    return isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError,
                                                             IsADirectoryError, NotADirectoryError))


def error_dict(exc: BaseException) -> dict:
    if isinstance(exc, OSError):
        from echo_cli.errors import from_os_error

        exc = from_os_error(exc) or exc
    if isinstance(exc, EchoError):
        d = exc.to_dict()
    elif isinstance(exc, WorkerCrashed):     # killed from outside (OOM killer, a signal): not a bug of ours
        d = {"kind": "crash", "exit_code": 1, "path": None, "message": str(exc),
             "fix": "rerun the batch (done jobs are skipped); if it recurs, give each worker more memory "
                    "(fewer --workers)"}
    else:
        d = {"kind": "internal", "exit_code": 1, "path": getattr(exc, "filename", None),
             "message": f"{type(exc).__name__}: {exc}", "fix": None,
             "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]}
    d["transient"] = is_transient(exc)
    d["type"] = type(exc).__name__
    return d


# --------------------------------------------------------------------------------------
# The job itself
# --------------------------------------------------------------------------------------

@dataclass
class JobResult:
    id: str
    line: int
    index: int
    output: str
    status: str = "pending"        # done | skipped | failed | invalid | locked | interrupted
    attempts: int = 0
    hash: str | None = None
    error: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    duration: float | None = None  # seconds of video rendered
    worker: str | None = None
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def render_job(job: Job) -> dict | None:
    """Default job function: the public render API (what `echo-cli render` calls).

    The render writes into the job's staging folder (so its intermediates live there too),
    then the finished file is renamed over the output: same folder tree, atomic."""
    from echo_cli.api.render import render

    stage = staging_dir(job.output)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    staged = stage / job.output.name
    kwargs: dict[str, Any] = {"output": staged}
    if job.preset:
        kwargs["preset"] = job.preset
    if job.seed is not None:
        kwargs["seed"] = job.seed
    if job.overrides:
        kwargs["overrides"] = dict(job.overrides)
    try:
        if job.dialogue is not None:
            res = render(job.dialogue, **kwargs)
        else:
            res = render(None, reference=job.inputs["reference"], audio=job.inputs["audio"],
                         user_video=job.inputs.get("user_video"), user_audio=job.inputs.get("user_audio"),
                         transcript=job.inputs.get("transcript") or job.transcript, **kwargs)
        if not staged.is_file():
            raise OutputError("the renderer returned without writing the output", path=job.output,
                              fix="this is a bug: report it with --verbose output")
        os.replace(staged, job.output)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    out = _result_dict(res) or {}
    out["output"] = str(job.output)
    return out


def _result_dict(res: Any) -> dict | None:
    if res is None:
        return None
    if isinstance(res, dict):
        return res
    out = {}
    for k in ("timings", "duration", "output", "frames"):
        if hasattr(res, k):
            out[k] = getattr(res, k)
    return out


def execute_job(job: Job, job_fn: JobFn = render_job, *, ckpt: str | None = None,
                worker: str | None = None, attempt: int = 1) -> JobResult:
    """Run one job idempotently in this process. Never raises for a job failure (returns it in
    the result); KeyboardInterrupt/SystemExit propagate after partial files are removed."""
    res = JobResult(job.id, job.line, job.index, str(job.output), attempts=attempt, worker=worker,
                    started=time.time())
    t0 = time.perf_counter()
    try:
        h = job_hash(job, ckpt=ckpt)
        res.hash = h
        res.timings["hash"] = time.perf_counter() - t0
        if is_done(job.output, h):
            res.status = "skipped"
            return res
        t1 = time.perf_counter()
        try:
            lock = OutputLock(job.output).acquire()
        except LockBusy as e:
            res.status = "locked"
            res.error = {"kind": "locked", "message": str(e), "transient": False}
            return res
        except OSError as e:
            raise OutputError(f"cannot create the lock file: {e.strerror}", path=job.output.parent,
                              fix="choose a writable output folder") from e
        res.timings["lock"] = time.perf_counter() - t1
        try:
            if is_done(job.output, h):      # finished by another process while we waited
                res.status = "skipped"
                return res
            clean_partials(job.output)
            marker_path(job.output).unlink(missing_ok=True)
            t2 = time.perf_counter()
            info = job_fn(job) or {}
            res.timings["render"] = time.perf_counter() - t2
            for k, v in (info.get("timings") or {}).items():
                res.timings[f"render.{k}"] = float(v)
            if info.get("duration") is not None:
                res.duration = float(info["duration"])
            if not job.output.is_file() or job.output.stat().st_size == 0:
                raise OutputError("the renderer returned without writing the output", path=job.output,
                                  fix="this is a bug: report it with --verbose output")
            write_marker(job.output, h, job, {"duration": res.duration, "timings": res.timings})
            res.status = "done"
        except BaseException:
            clean_partials(job.output)
            raise
        finally:
            lock.release()
    except Exception as e:  # noqa: BLE001 - a job's failure is data for the report, not a crash
        res.status = "failed"
        res.error = error_dict(e)
    finally:
        res.finished = time.time()
        res.timings["total"] = time.perf_counter() - t0
    return res
