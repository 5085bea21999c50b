"""Deterministic sharding of a manifest over array jobs (SLURM, Kubernetes Indexed Jobs, by hand).

Shard i of n takes the rows whose manifest index k satisfies k % n == i (round robin over
*all* rows, valid or not, so `--skip-invalid` on one node never shifts the others). Every
job is in exactly one shard, shards differ in size by at most one, and the assignment
depends only on the manifest, never on the machine or the time.

Where the shard comes from, first match wins:
1. `--shard i/n` on the command line;
2. SLURM job arrays: SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN
   (index = TASK_ID - TASK_MIN, so `--array=1-8` works as well as `--array=0-7`);
3. Kubernetes Indexed Jobs: JOB_COMPLETION_INDEX, with the count in ECHO_SHARD_COUNT (or
   JOB_COMPLETIONS); Kubernetes does not expose `.spec.completions` to the pod, so the Job
   YAML written by `echo-cli batch --emit k8s` sets ECHO_SHARD_COUNT to it;
4. otherwise the whole manifest (shard 0/1).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from echo_cli.errors import UsageError

T = TypeVar("T")
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    source: str = "cli"             # cli | slurm | k8s | none

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"shard {self.index}/{self.count} is out of range",
                             fix="use i/n with 0 <= i < n, e.g. --shard 0/4")

    def select(self, items: Sequence[T], key=lambda x: x.index) -> list[T]:
        return [x for x in items if key(x) % self.count == self.index]

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def is_whole(self) -> bool:
        return self.count == 1


def parse_shard(text: str) -> Shard:
    m = _SHARD_RE.match(text or "")
    if not m:
        raise UsageError(f"--shard '{text}' is not of the form i/n", fix="e.g. --shard 0/4 (shards count from 0)")
    return Shard(int(m.group(1)), int(m.group(2)), "cli")


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    v = env.get(name)
    if v is None or v.strip() == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise UsageError(f"environment variable {name}={v!r} is not an integer",
                         fix=f"unset {name} or pass --shard i/n") from None


def detect_shard(cli: str | None = None, env: Mapping[str, str] | None = None) -> Shard:
    env = os.environ if env is None else env
    if cli:
        return parse_shard(cli)
    task = _int_env(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        count = _int_env(env, "SLURM_ARRAY_TASK_COUNT")
        lo = _int_env(env, "SLURM_ARRAY_TASK_MIN") or 0
        if count is None:
            hi = _int_env(env, "SLURM_ARRAY_TASK_MAX")
            if hi is None:
                raise UsageError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
                                 fix="use a contiguous --array=0-N (SLURM sets the count), or pass --shard i/n")
            count = hi - lo + 1
        step = _int_env(env, "SLURM_ARRAY_TASK_STEP") or 1
        if step != 1:
            raise UsageError(f"SLURM array step {step} is not supported for sharding",
                             fix="use a contiguous --array=0-N, or pass --shard i/n")
        return Shard(task - lo, count, "slurm")
    index = _int_env(env, "JOB_COMPLETION_INDEX")
    if index is not None:
        count = _int_env(env, "ECHO_SHARD_COUNT")
        if count is not None and count < 1:
            raise UsageError(f"ECHO_SHARD_COUNT={count} must be at least 1",
                             fix="set env ECHO_SHARD_COUNT to the Job's completions (echo-cli batch --emit k8s does)")
        count = count or _int_env(env, "JOB_COMPLETIONS")
        if count is None:
            raise UsageError("JOB_COMPLETION_INDEX is set but ECHO_SHARD_COUNT is not",
                             fix="set env ECHO_SHARD_COUNT to the Job's completions (echo-cli batch --emit k8s does)")
        return Shard(index, count, "k8s")
    return Shard(0, 1, "none")
