"""`--engine ray`: the same jobs as Ray tasks, on a cluster (`--address`) or a local Ray.

Optional extra (`pip install 'echo-cli[ray]'`). Each task runs `execute_job` (hash, done
marker, lock, atomic output), so idempotence, resume and "one lock per output" hold across
Ray nodes sharing a filesystem exactly as they do for local workers. Ray's own task retries
are off: the driver retries transient failures (a dead Ray worker, I/O errors) with the same
backoff as the local engine and never retries bad input. Ray reuses worker processes, so the
models the render API caches are loaded once per Ray worker.
"""
from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any, Callable

from echo_cli import log
from echo_cli.batch.jobs import JobResult, WorkerCrashed, checkpoint_id, error_dict, execute_job
from echo_cli.errors import DependencyError

if TYPE_CHECKING:
    from echo_cli.batch.manifest import Job
    from echo_cli.batch.runner import BatchOptions, BatchSummary, Progress

LOG = log.get("echo_cli.batch.ray")


def _task(job: "Job", job_fn_ref: Any, ckpt: str, attempt: int) -> dict:
    import os
    import socket

    from echo_cli.batch.runner import resolve_job_fn

    res = execute_job(job, resolve_job_fn(job_fn_ref), ckpt=ckpt,
                      worker=f"ray:{socket.gethostname()}:{os.getpid()}", attempt=attempt)
    return res.to_dict()


def run_ray(jobs: list["Job"], opts: "BatchOptions", record: Callable[[JobResult], None],
            summary: "BatchSummary", progress: "Progress") -> None:
    try:
        import ray
    except ImportError as e:
        raise DependencyError("the Ray engine needs the 'ray' package", fix="pip install 'echo-cli[ray]'") from e
    from echo_cli.batch.runner import _Breaker, _cleanup_after_death, next_try, record_not_started

    breaker = _Breaker()
    held_since: dict[int, float] = {}
    outer_record = record

    def record(r: JobResult) -> None:  # noqa: F811 - plus the batch-wide error breaker
        outer_record(r)
        breaker.see(r)

    if not jobs:
        return
    started_here = False
    if not ray.is_initialized():
        if opts.address:
            try:
                ray.init(address=opts.address, log_to_driver=False)
            except ConnectionError as e:        # the cluster is an environment fact, not a bug of ours
                raise DependencyError(f"no Ray cluster at --address {opts.address}: {e}",
                                      fix="start one (`ray start --head`), or drop --address for a local Ray") from None
        else:
            ray.init(num_cpus=max(1, opts.workers), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        started_here = True
    remote = ray.remote(max_retries=0, num_cpus=1)(_task)
    ckpt = checkpoint_id()
    in_flight: dict[Any, tuple["Job", int]] = {}
    waiting: list[tuple["Job", int, float]] = [(j, 1, 0.0) for j in jobs]
    stop = {"n": 0}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["n"] += 1

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (waiting or in_flight) and not stop["n"]:
            if breaker.error is not None and not in_flight:
                break
            now = time.time()
            # at most --workers tasks in flight: the cluster's share, and a breaker that can act
            room = max(1, opts.workers) - len(in_flight)
            due = [w for w in waiting if w[2] <= now][:max(0, room)] if breaker.error is None else []
            for w in due:
                waiting.remove(w)
            for job, attempt, _ in due:
                in_flight[remote.remote(job, opts.job_fn, ckpt, attempt)] = (job, attempt)
            if not in_flight:
                time.sleep(0.2)
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                job, attempt = in_flight.pop(ref)
                try:
                    res = JobResult(**ray.get(ref))
                except Exception as e:  # noqa: BLE001 - a Ray worker or node died: transient
                    _cleanup_after_death(job)
                    res = JobResult(job.id, job.line, job.index, str(job.output), status="failed",
                                    attempts=attempt, finished=time.time(),
                                    error=error_dict(WorkerCrashed(f"Ray task failed: {type(e).__name__}: {e}")))
                again = next_try(res, job, attempt, opts, summary, progress, held_since)
                if again is not None:
                    waiting.append((job, *again))
                else:
                    record(res)
        if breaker.error is not None and not stop["n"]:
            summary.aborted = breaker.error
            for job, attempt, _ in waiting:
                outer_record(JobResult(job.id, job.line, job.index, str(job.output), status="failed", attempts=0,
                                       finished=time.time(), error={**breaker.error, "message":
                                                                    f"not attempted: {breaker.error.get('message')}"}))
        if stop["n"]:
            for ref, (job, attempt) in in_flight.items():
                ray.cancel(ref, force=True)
            for ref, (job, attempt) in in_flight.items():
                _cleanup_after_death(job)
                record(JobResult(job.id, job.line, job.index, str(job.output), status="interrupted",
                                 attempts=attempt, finished=time.time(),
                                 error={"kind": "interrupted", "message": "stopped by signal; partial output removed",
                                        "transient": True}))
            record_not_started([job for job, _, _ in waiting], record)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if started_here:
            ray.shutdown()
