"""Sharding: deterministic, every job exactly once, from --shard, SLURM and Kubernetes env vars."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from echo_cli.batch.shard import Shard, detect_shard, parse_shard
from echo_cli.errors import UsageError


class _J:
    def __init__(self, index):
        self.index = index


@given(n_jobs=st.integers(0, 300), n=st.integers(1, 40))
@settings(max_examples=200, deadline=None)
def test_shards_partition_every_job_exactly_once(n_jobs, n):
    jobs = [_J(i) for i in range(n_jobs)]
    seen = []
    sizes = []
    for i in range(n):
        part = Shard(i, n).select(jobs)
        seen += [j.index for j in part]
        sizes.append(len(part))
    assert sorted(seen) == list(range(n_jobs))
    assert max(sizes) - min(sizes) <= 1            # balanced
    # deterministic: the same call twice gives the same jobs in the same order
    assert [j.index for j in Shard(0, n).select(jobs)] == [j.index for j in Shard(0, n).select(jobs)]


@pytest.mark.parametrize("text,expected", [("0/3", (0, 3)), (" 2 / 3 ", (2, 3)), ("0/1", (0, 1))])
def test_parse_shard(text, expected):
    s = parse_shard(text)
    assert (s.index, s.count, s.source) == (*expected, "cli")


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "a/b", "1", "", "1/2/3"])
def test_parse_shard_rejects(text):
    with pytest.raises(UsageError):
        parse_shard(text)


def test_cli_wins_over_env():
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert detect_shard("2/5", env) == Shard(2, 5, "cli")


def test_slurm_env_with_min_offset():
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
    assert detect_shard(None, env) == Shard(2, 4, "slurm")
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert detect_shard(None, env) == Shard(2, 3, "slurm")


def test_slurm_env_from_max_when_count_missing():
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2"}
    assert detect_shard(None, env) == Shard(1, 3, "slurm")


@pytest.mark.parametrize("env", [
    {"SLURM_ARRAY_TASK_ID": "1"},                                              # no count
    {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"},              # not an int
    {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3"},              # out of range
    {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "2"},
    {"JOB_COMPLETION_INDEX": "0"},                                             # no count
    {"JOB_COMPLETION_INDEX": "4", "ECHO_SHARD_COUNT": "4"},
    {"JOB_COMPLETION_INDEX": "0", "ECHO_SHARD_COUNT": "0"},                  # a count of 0, not "unset"
])
def test_bad_env_is_a_usage_error(env):
    with pytest.raises(UsageError) as e:
        detect_shard(None, env)
    if env.get("ECHO_SHARD_COUNT") == "0":
        assert "at least 1" in e.value.message


def test_k8s_env():
    assert detect_shard(None, {"JOB_COMPLETION_INDEX": "1", "ECHO_SHARD_COUNT": "3"}) == Shard(1, 3, "k8s")
    assert detect_shard(None, {"JOB_COMPLETION_INDEX": "0", "JOB_COMPLETIONS": "2"}) == Shard(0, 2, "k8s")


def test_no_env_is_the_whole_manifest():
    s = detect_shard(None, {})
    assert s.is_whole and s.source == "none"
