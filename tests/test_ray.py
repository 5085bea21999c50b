"""`--engine ray`: the same manifest on a local Ray instance (started by the batch itself)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import media_factory as mf
from test_batch import assert_complete, real_manifest, reports, small_manifest

pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install 'echo-cli[ray]'")

TESTS = Path(__file__).resolve().parent


def test_ray_engine_runs_resumes_and_retries(tmp_path):
    m = small_manifest(tmp_path, 5)
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows.append({"id": "bad1", "reference": "in/ref.png", "audio": "in/a.wav", "output": "out/bad1.mp4"})
    rows.append({"id": "flaky1", "reference": "in/ref.png", "audio": "in/a.wav", "output": "out/flaky1.mp4"})
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = (
        "import sys\n"
        "from echo_cli.batch import BatchOptions, run_batch\n"
        "if __name__ == '__main__':\n"
        f"    s = run_batch({str(m)!r}, BatchOptions(engine='ray', workers=2, retries=2, backoff=0.1,\n"
        "                  job_fn='media_factory:failing_render', progress=False))\n"
        "    print(s.done, s.skipped, s.failed, s.retried)\n"
        "    sys.exit(s.exit_code)\n")
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{os.environ.get('PYTHONPATH', '')}", "RAY_DISABLE_USAGE_STATS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                       cwd=str(tmp_path))
    assert r.returncode == 8, r.stderr[-3000:]
    done, skipped, failed, retried = map(int, r.stdout.split()[-4:])
    assert (done, failed) == (6, 1) and retried >= 1
    recs = {x["id"]: x for x in reports(tmp_path) if x["type"] == "job"}
    assert recs["bad1"]["attempts"] == 1 and recs["bad1"]["error"]["kind"] == "input"
    assert recs["flaky1"]["status"] == "done" and recs["flaky1"]["attempts"] == 2
    assert all(x["worker"].startswith("ray:") for x in recs.values())
    # rerun on Ray: nothing left to do except the bad row
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                       cwd=str(tmp_path))
    done, skipped, failed, _ = map(int, r.stdout.split()[-4:])
    assert (done, skipped, failed) == (0, 6, 1)


def test_ray_engine_real_renders(tmp_path):
    m = real_manifest(tmp_path, 4)
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--engine", "ray", "--workers", "2", "--allow-outside"),
                       capture_output=True, text=True, timeout=1800, cwd=str(tmp_path),
                       env={**os.environ, "RAY_DISABLE_USAGE_STATS": "1", "ECHO_CACHE_DIR": str(tmp_path / "cache"),
                            "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert_complete(tmp_path, m)
    assert sorted(x["status"] for x in reports(tmp_path) if x["type"] == "job") == ["done"] * 4


def test_no_ray_cluster_at_the_address_is_a_dependency_error(tmp_path):
    """`--address auto` with no cluster running: an environment fact, exit 6 with a fix (it was
    an internal error, exit 1, "report it")."""
    m = small_manifest(tmp_path, 1)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--engine", "ray", "--address", "auto"), capture_output=True,
                       text=True, timeout=300, cwd=str(tmp_path),
                       env={**env, "RAY_DISABLE_USAGE_STATS": "1", "ECHO_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 6 and "no Ray cluster" in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
