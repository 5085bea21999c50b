"""`echo-cli batch`: scheduling, resume, locks, retries, signals, shards, emitters, real renders.

Two kinds of tests:
- scheduling logic (hash, locks, retries classification, kills, shards) with an injected job
  that writes a real short mp4 through io_atomic (`media_factory.tiny_render`), so each job is
  sub-second and kills land reliably mid-write;
- acceptance tests on real renders (`echo-cli batch` calling the render API) on
  ../shared/data portraits + 2 s of real speech, draft preset.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

import media_factory as mf
from echo_cli.batch import jobs as J
from echo_cli.batch.emit import EmitOptions, emit_k8s, emit_slurm
from echo_cli.batch.locks import LockBusy, OutputLock, is_locked, lock_path, read_lock
from echo_cli.batch.manifest import load_manifest

TESTS = Path(__file__).resolve().parent

DRIVER = r"""
import sys
sys.path.insert(0, {tests!r})
from echo_cli import log; log.setup(0)
from echo_cli.batch import BatchOptions, run_batch, detect_shard
from echo_cli.errors import EchoError
if __name__ == "__main__":       # spawned workers re-import this file
    manifest, workers, job_fn, shard = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None, sys.argv[4] or None
    import os
    opts = BatchOptions(workers=workers, job_fn=job_fn, shard=detect_shard(shard), retries=int(sys.argv[5]),
                        backoff=0.05, progress=False, skip_invalid=True,
                        lock_poll=float(os.environ.get("ECHO_TEST_LOCK_POLL", "0.5")),
                        lock_wait=float(os.environ.get("ECHO_TEST_LOCK_WAIT", "900")))
    try:
        s = run_batch(manifest, opts, allow_outside=True)
        sys.exit(s.exit_code)
    except EchoError as e:
        print(e.one_line(), file=sys.stderr)
        sys.exit(e.exit_code)
"""


def driver(tmp: Path) -> Path:
    p = tmp / "driver.py"
    p.write_text(DRIVER.format(tests=str(TESTS)))
    return p


def start_batch(tmp: Path, manifest: Path, *, workers=2, job_fn="media_factory:tiny_render", shard="",
                retries=5, env=None) -> subprocess.Popen:
    e = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, str(driver(tmp)), str(manifest), str(workers), job_fn or "", shard,
                             str(retries)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                            cwd=str(tmp))


def run_batch_proc(tmp, manifest, timeout=300, **kw) -> subprocess.CompletedProcess:
    p = start_batch(tmp, manifest, **kw)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def small_manifest(tmp: Path, n: int, prefix: str = "job") -> Path:
    """n inline jobs over two tiny real input files (content only feeds the job hash)."""
    (tmp / "in").mkdir(exist_ok=True)
    ref = tmp / "in" / "ref.png"
    if not ref.exists():
        from PIL import Image
        Image.new("RGB", (32, 32), (200, 150, 120)).save(ref)
        mf.silent_wav(tmp / "in" / "a.wav", 0.5)
    rows = [{"id": f"{prefix}{i:02d}", "reference": "in/ref.png", "audio": "in/a.wav",
             "output": f"out/{prefix}{i:02d}.mp4", "seed": i} for i in range(n)]
    m = tmp / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def reports(tmp: Path) -> list[dict]:
    out = []
    for p in sorted(tmp.glob("*.report.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


def leftovers(folder: Path) -> list[Path]:
    """Anything in an output folder that is not a finished output or its marker."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir()
            if not (p.suffix == ".mp4" and not p.name.startswith(".")) and not p.name.endswith(".mp4.echo.json")]


def worker_pids(batch_pid: int) -> list[int]:
    try:
        kids = psutil.Process(batch_pid).children()
    except psutil.NoSuchProcess:
        return []
    pids = []
    for k in kids:
        try:
            cmd = " ".join(k.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            pids.append(k.pid)
    return pids


def assert_complete(tmp: Path, manifest: Path, check_video=True) -> None:
    m = load_manifest(manifest, allow_outside=True)
    for job in m.jobs:
        assert job.output.is_file(), f"missing output {job.output}"
        assert J.is_done(job.output, J.job_hash(job)), f"no matching done marker for {job.output}"
        if check_video:
            assert mf.valid_video(job.output), f"invalid video {job.output}"
        assert not lock_path(job.output).exists()
    folders = {j.output.parent for j in m.jobs}
    for f in folders:
        assert leftovers(f) == [], f"partial files left: {leftovers(f)}"


# ======================================================================================
# Pure logic: hashing, markers, locks, error classes
# ======================================================================================

def test_job_hash_tracks_content_settings_and_checkpoint(tmp_path):
    m = small_manifest(tmp_path, 2)
    a, b = load_manifest(m).jobs
    h = J.job_hash(a)
    assert h == J.job_hash(a)                               # stable
    assert h != J.job_hash(b)                               # seed differs
    assert h != J.job_hash(a, ckpt="other-checkpoint")
    assert h != J.job_hash(a, tool_version="9.9.9")
    (tmp_path / "in" / "a.wav").write_bytes((tmp_path / "in" / "a.wav").read_bytes() + b"\0\0")
    assert J.job_hash(a) != h                               # content change -> re-render


def test_marker_needs_matching_hash_and_size(tmp_path):
    m = small_manifest(tmp_path, 1)
    job = load_manifest(m).jobs[0]
    h = J.job_hash(job)
    job.output.parent.mkdir(parents=True)
    job.output.write_bytes(b"x" * 100)
    assert not J.is_done(job.output, h)                     # no marker: not done
    J.write_marker(job.output, h, job)
    assert J.is_done(job.output, h)
    assert not J.is_done(job.output, "0" * 64)
    job.output.write_bytes(b"x" * 50)                       # output replaced behind our back
    assert not J.is_done(job.output, h)


def test_lock_is_exclusive_and_records_holder(tmp_path):
    out = tmp_path / "o.mp4"
    with OutputLock(out) as lk:
        info = read_lock(lk.path)
        assert info.pid == os.getpid() and info.host
        assert is_locked(out)
        with pytest.raises(LockBusy):
            OutputLock(out).acquire()
    assert not lock_path(out).exists() and not is_locked(out)


def test_stale_lock_of_a_killed_process_is_broken(tmp_path):
    out = tmp_path / "o.mp4"
    code = (f"import sys, time; sys.path.insert(0, {str(TESTS)!r})\n"
            f"from echo_cli.batch.locks import OutputLock\n"
            f"l = OutputLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):                       # live holder: busy
            OutputLock(out).acquire()
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert lock_path(out).exists()                      # the dead holder left its file...
        with OutputLock(out):                               # ...which is detected as stale
            assert read_lock(lock_path(out)).pid == os.getpid()
    finally:
        p.kill()


def test_partial_files_are_recognised(tmp_path):
    from echo_cli.io_atomic import temp_sibling

    out = tmp_path / "a.mp4"
    t1 = temp_sibling(out)
    t2 = temp_sibling(J.marker_path(out))
    other = temp_sibling(tmp_path / "b.mp4")
    assert set(J.partial_files(out)) == {t1, t2}
    assert J.clean_partials(out) == 2 and other.exists()


@pytest.mark.parametrize("exc,transient", [
    (J.WorkerCrashed("x"), True), (OSError(5, "EIO"), True), (TimeoutError(), True), (MemoryError(), True),
    (FileNotFoundError(2, "x"), False), (PermissionError(13, "x"), False), (ValueError("bug"), False),
])
def test_transient_classification(exc, transient):
    assert J.is_transient(exc) is transient


def test_echo_errors_are_permanent():
    from echo_cli.errors import InputError, ModelError, OutputError, SpecError

    for cls in (SpecError, InputError, ModelError, OutputError):
        assert not J.is_transient(cls("x"))


# ======================================================================================
# Scheduling with worker processes (injected short job)
# ======================================================================================

def test_runs_skips_done_and_reruns_changed(tmp_path):
    m = small_manifest(tmp_path, 6)
    r = run_batch_proc(tmp_path, m, workers=2)
    assert r.returncode == 0, r.stderr
    assert_complete(tmp_path, m)
    recs = [x for x in reports(tmp_path) if x["type"] == "job"]
    assert sorted(x["status"] for x in recs) == ["done"] * 6
    assert all("render" in x["timings"] and "total" in x["timings"] for x in recs)
    summary = [x for x in reports(tmp_path) if x["type"] == "summary"][0]
    assert summary["done"] == 6 and summary["exit_code"] == 0 and summary["videos_per_min"] > 0
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.mp4")}
    # second run: nothing to do
    r = run_batch_proc(tmp_path, m, workers=2)
    assert r.returncode == 0
    assert sorted(x["status"] for x in reports(tmp_path) if x["type"] == "job") == ["skipped"] * 6
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.mp4")}
    # a changed setting on one row re-renders exactly that row
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows[3]["steps"] = 3
    m.write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = run_batch_proc(tmp_path, m, workers=2)
    st = {x["id"]: x["status"] for x in reports(tmp_path) if x["type"] == "job"}
    assert st.pop("job03") == "done" and set(st.values()) == {"skipped"}


def test_retries_transient_but_not_bad_input(tmp_path):
    rows = [{"id": i, "reference": "in/ref.png", "audio": "in/a.wav", "output": f"out/{i}.mp4"}
            for i in ("good1", "bad1", "flaky1", "good2")]
    small_manifest(tmp_path, 1)
    m = tmp_path / "r.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run_batch_proc(tmp_path, m, workers=2, job_fn="media_factory:failing_render", retries=2)
    assert r.returncode == 8, r.stderr                      # PartialFailure
    recs = {x["id"]: x for x in reports(tmp_path) if x["type"] == "job"}
    assert recs["bad1"]["status"] == "failed" and recs["bad1"]["attempts"] == 1
    assert recs["bad1"]["error"]["kind"] == "input" and "no face" in recs["bad1"]["error"]["message"]
    assert recs["flaky1"]["status"] == "done" and recs["flaky1"]["attempts"] == 2
    assert recs["good1"]["status"] == recs["good2"]["status"] == "done"
    assert not (tmp_path / "out" / "bad1.mp4").exists()


def _in_flight(out: Path) -> bool:
    return out.is_dir() and any(p.name.startswith(".") and ".part" in p.name for p in out.iterdir())


def test_workers_stop_when_the_batch_is_killed_outright(tmp_path):
    """SIGKILL of the batch itself (the OOM killer, a scheduler): its workers used to finish
    their renders for nobody; they now stop as a SIGTERM stops them (partial files removed,
    locks released), and a rerun finishes the manifest."""
    m = small_manifest(tmp_path, 6)
    log = tmp_path / "renders.log"
    p = start_batch(tmp_path, m, workers=2, env={"ECHO_TEST_SLEEP": "5", "ECHO_TEST_RENDER_LOG": str(log)})
    try:
        assert mf.wait_for(lambda: _in_flight(tmp_path / "out"), 120, 0.05)
        pids = worker_pids(p.pid)
        assert pids
        p.kill()
        p.communicate(timeout=60)
        gone = lambda: not any(Path(f"/proc/{q}").exists() and "zombie" not in _state(q) for q in pids)  # noqa: E731
        assert mf.wait_for(gone, 30, 0.1), "workers outlived the killed batch"
    finally:
        p.kill()
    assert not log.exists(), "a worker finished its render after the batch was gone"
    assert leftovers(tmp_path / "out") == [] and not list((tmp_path / "out").glob("*.echo.lock"))
    r = run_batch_proc(tmp_path, m, workers=2)
    assert r.returncode == 0, r.stderr
    assert_complete(tmp_path, m)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_sigkill_workers_then_rerun_completes_exactly_once(tmp_path):
    n = 16
    m = small_manifest(tmp_path, n)
    log = tmp_path / "renders.log"
    env = {"ECHO_TEST_SLEEP": "1.0", "ECHO_TEST_RENDER_LOG": str(log)}
    p = start_batch(tmp_path, m, workers=2, env=env, retries=0)
    rng = random.Random(7)
    kills = 0
    try:
        for _ in range(4):                          # kill a worker at a random moment of a render
            if not mf.wait_for(lambda: p.poll() is not None or _in_flight(tmp_path / "out"), 120, 0.02):
                break
            time.sleep(rng.uniform(0.0, 0.8))
            pids = worker_pids(p.pid)
            if p.poll() is not None or not pids:
                break
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills += 1
            time.sleep(0.5)
        p.communicate(timeout=300)
    finally:
        p.kill()
    assert kills >= 3
    assert p.returncode in (0, 8)           # retries=0: the killed jobs fail this time (crashed)
    crashed = [x for x in reports(tmp_path) if x.get("status") == "failed"]
    assert crashed and all(x["error"]["type"] == "WorkerCrashed" for x in crashed)
    assert all(x["error"]["kind"] == "crash" and x["error"]["fix"] for x in crashed)   # not "internal" (a bug)
    assert leftovers(tmp_path / "out") == []               # killed renders left nothing behind
    r = run_batch_proc(tmp_path, m, workers=2, env=env)
    assert r.returncode == 0, r.stderr
    assert_complete(tmp_path, m)
    finished = [x["id"] for x in reports(tmp_path) if x.get("status") == "done"]
    assert len(finished) == len(set(finished))
    assert set(log.read_text().split()) == {f"job{i:02d}" for i in range(n)}


def test_killed_worker_is_retried_within_the_run(tmp_path):
    m = small_manifest(tmp_path, 4)
    p = start_batch(tmp_path, m, workers=1, env={"ECHO_TEST_SLEEP": "1.5"}, retries=3)
    try:
        assert mf.wait_for(lambda: any(J.partial_files(tmp_path / "out" / f"job{i:02d}.mp4") for i in range(4))
                           if (tmp_path / "out").is_dir() else False, 120)
        os.kill(worker_pids(p.pid)[0], signal.SIGKILL)
        p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 0
    assert_complete(tmp_path, m)
    s = [x for x in reports(tmp_path) if x["type"] == "summary"][0]
    assert s["retried"] >= 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_rerun_finishes(tmp_path, sig):
    m = small_manifest(tmp_path, 8)
    p = start_batch(tmp_path, m, workers=2, env={"ECHO_TEST_SLEEP": "2"})
    try:
        assert mf.wait_for(lambda: (tmp_path / "out").is_dir()
                           and any(J.partial_files(tmp_path / "out" / f"job{i:02d}.mp4") for i in range(8)), 120)
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "error:" in err and "Traceback" not in err
    assert leftovers(tmp_path / "out") == []
    recs = reports(tmp_path)
    statuses = [x["status"] for x in recs if x["type"] == "job"]
    assert "interrupted" in statuses
    # every job has its line (the ones never started too) and the counts add up
    summary = next(x for x in recs if x["type"] == "summary")
    assert len(statuses) == 8 == summary["total"]
    assert sum(summary[k] for k in ("done", "skipped", "failed", "invalid", "locked", "interrupted")) == 8
    r = run_batch_proc(tmp_path, m, workers=2)
    assert r.returncode == 0, r.stderr
    assert_complete(tmp_path, m)


def test_a_stopped_batch_prints_its_summary_with_the_error_under_json(capsys):
    """docs/batch.md: under --json the summary is on stdout; a stopped batch printed the
    error object alone."""
    from echo_cli.cli import main

    main._report("error: m.jsonl: stopped", {"kind": "interrupted", "exit_code": 130}, ["--json", "batch", "m.jsonl"],
                 {"total": 8, "done": 2, "interrupted": 6})
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False and payload["error"]["kind"] == "interrupted" and payload["total"] == 8


def test_two_batches_on_one_manifest_render_each_job_once(tmp_path):
    m = small_manifest(tmp_path, 8)
    log = tmp_path / "renders.log"
    env = {"ECHO_TEST_SLEEP": "0.5", "ECHO_TEST_RENDER_LOG": str(log)}
    a = start_batch(tmp_path, m, workers=2, env=env)
    b = start_batch(tmp_path, m, workers=2, env=env)
    a.communicate(timeout=300)
    b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0
    rendered = log.read_text().split()
    assert sorted(rendered) == sorted(set(rendered)) and len(rendered) == 8   # nobody rendered twice
    assert_complete(tmp_path, m)


HOLDER = ("import sys, time\nfrom echo_cli.batch.locks import OutputLock\n"
          "l = OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(float(sys.argv[2]))")


def _hold(out: Path, seconds: float) -> subprocess.Popen:
    """Another live process on this host holds the job's lock for `seconds`, then leaves
    without rendering it (a batch that died after taking the job, or one still at work)."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_job_held_elsewhere_is_waited_for_and_taken_over(tmp_path):
    """A job another live process holds was recorded `locked` and the batch exited 0 with the
    job unrendered; if the holder then failed, nobody rendered it. Now the batch waits, and
    renders the job itself once the holder lets go without finishing it."""
    m = small_manifest(tmp_path, 2)
    holder = _hold(tmp_path / "out" / "job00.mp4", 2.0)
    r = run_batch_proc(tmp_path, m, workers=1)
    holder.wait(timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "waiting for it to finish" in r.stderr, r.stderr[-2000:]
    assert_complete(tmp_path, m)


def test_a_job_still_held_when_the_wait_ends_is_not_a_success(tmp_path):
    m = small_manifest(tmp_path, 2)
    holder = _hold(tmp_path / "out" / "job00.mp4", 120.0)
    try:
        r = run_batch_proc(tmp_path, m, workers=1, env={"ECHO_TEST_LOCK_WAIT": "1.5"})
    finally:
        holder.kill()
    assert r.returncode == 8, r.stderr[-2000:]                  # not 0: the scheduler must run it again
    st = {x["id"]: x for x in reports(tmp_path) if x["type"] == "job"}
    assert st["job00"]["status"] == "locked" and "still after" in st["job00"]["error"]["message"]
    assert st["job01"]["status"] == "done"


@pytest.mark.parametrize("how", ["cli", "slurm", "k8s"])
def test_shards_as_separate_processes_cover_every_job_once(tmp_path, how):
    m = small_manifest(tmp_path, 10)
    log = tmp_path / "renders.log"
    procs = []
    for i in range(3):
        env = {"ECHO_TEST_RENDER_LOG": str(log)}
        shard = ""
        if how == "cli":
            shard = f"{i}/3"
        elif how == "slurm":                      # --array=1-3: ids 1..3, min 1
            env.update(SLURM_ARRAY_TASK_ID=str(i + 1), SLURM_ARRAY_TASK_COUNT="3", SLURM_ARRAY_TASK_MIN="1")
        else:
            env.update(JOB_COMPLETION_INDEX=str(i), ECHO_SHARD_COUNT="3")
        procs.append(start_batch(tmp_path, m, workers=1, env=env, shard=shard))
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    rendered = log.read_text().split()
    assert sorted(rendered) == [f"job{i:02d}" for i in range(10)]        # each exactly once
    per_shard = [sorted(x["id"] for x in map(json.loads, f.read_text().splitlines()) if x["type"] == "job")
                 for f in sorted(tmp_path.glob("m.shard*.report.jsonl"))]
    assert len(per_shard) == 3 and sum(map(len, per_shard)) == 10
    assert_complete(tmp_path, m)


# ======================================================================================
# Emitters
# ======================================================================================

def test_emit_slurm_script_is_valid_bash_and_quotes_names(tmp_path):
    m = small_manifest(tmp_path, 5)
    weird = tmp_path / "; rm -rf ~ .jsonl"
    weird.write_text(m.read_text())
    text = emit_slurm(weird, EmitOptions(shards=3, workers=2, batch_args=["--skip-invalid"]))
    assert "#SBATCH --array=0-2" in text
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    cmd_line = [ln for ln in text.splitlines() if ln.startswith("echo-cli")][0]
    import shlex
    argv = shlex.split(cmd_line)
    assert argv[:3] == ["echo-cli", "batch", str(weird.resolve())] and "--skip-invalid" in argv


def test_emit_k8s_indexed_job(tmp_path):
    m = small_manifest(tmp_path, 5)
    doc = yaml.safe_load(emit_k8s(m, EmitOptions(shards=4, image="reg/echo:1")))
    spec = doc["spec"]
    assert doc["kind"] == "Job" and spec["completionMode"] == "Indexed" and spec["completions"] == 4
    c = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["ECHO_SHARD_COUNT"] == "4" and c["image"] == "reg/echo:1"
    assert c["command"][:3] == ["echo-cli", "batch", str(m.resolve())]


# ======================================================================================
# CLI
# ======================================================================================

def test_an_empty_manifest_says_there_is_nothing_to_render(tmp_path):
    m = tmp_path / "jobs.jsonl"
    m.write_text("")
    r = subprocess.run(mf.cli_cmd("batch", str(m)), capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ECHO_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0 and "has no job rows" in r.stderr, r.stderr


def test_cli_check_lists_bad_rows_with_line_numbers(tmp_path):
    m = small_manifest(tmp_path, 2)
    m.write_text(m.read_text() + '{"reference": "in/missing.png", "audio": "in/a.wav"}\n{"reference": 3}\n')
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--check"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "line 3" in r.stderr and "missing.png" in r.stderr and "line 4" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # --skip-invalid: the rows a run would skip are named; a shard is checked as a run checks it
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--check", "--skip-invalid", "--shard", "1/2"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "line 3" in r.stderr and "line 4" in r.stderr, r.stderr
    assert "2 valid job(s) (1 in shard 1/2), 2 invalid row(s)" in r.stdout, r.stdout
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--check", "--skip-invalid", "--shard", "2/2"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "out of range" in r.stderr, r.stderr
    # an output below a regular file is the row's error at validation (it failed mid-run as
    # "cannot create the lock file: File exists")
    (tmp_path / "afile").write_text("x")
    m.write_text(m.read_text() + '{"reference": "in/ref.png", "audio": "in/a.wav", "output": "afile/x.mp4"}\n')
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--check"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "line 5" in r.stderr and "afile is a regular file" in r.stderr, r.stderr


def test_cli_emit_and_help(tmp_path):
    m = small_manifest(tmp_path, 3)
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--emit", "k8s", "--shards", "2"), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout.split("\n", 3)[-1])["spec"]["completions"] == 2
    r = subprocess.run(mf.cli_cmd("--json", "batch", str(m), "--emit", "slurm"), capture_output=True, text=True,
                       timeout=120)
    payload = json.loads(r.stdout)                   # --json: still exactly one object, the script inside
    assert r.returncode == 0 and payload["emit"] == "slurm" and payload["script"].startswith("#!")
    r = subprocess.run(mf.cli_cmd("batch", "--help"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--workers" in r.stdout and "Example" in r.stdout


# ======================================================================================
# Acceptance on real renders (the render API, real portraits and speech)
# ======================================================================================

PORTRAITS = ["s1.jpg", "s2.jpg", "s3.jpg", "s4.jpg", "s5.jpg"]
AUDIO = ["RD_Radio31_000.wav", "RD_Radio34_002.wav", "RD_Radio36_000.wav", "RD_Radio40_000.wav"]


def real_manifest(tmp: Path, n: int, extra_rows: list[dict] = ()) -> Path:
    """n real jobs: a ../shared/data portrait + 2 s of real speech each, draft preset, as
    dialogue rows whose transcript is a given SRT (a farm with scripts; no Whisper run per job)."""
    data = mf.need_shared()
    (tmp / "audio").mkdir(exist_ok=True)
    (tmp / "dialogues").mkdir(exist_ok=True)
    srt = tmp / "audio" / "words.srt"
    if not srt.exists():
        mf.srt(srt, "this is a short test sentence", 2.0)
    clips = []
    for i, a in enumerate(AUDIO):
        c = tmp / "audio" / f"clip{i}.wav"
        if not c.exists():
            mf.speech_clip(c, 2.0, start=0.5, source=a)
        clips.append(c)
    rows = []
    for i in range(n):
        d = mf.dialogue_yaml(tmp / "dialogues" / f"real{i:02d}.yaml",
                             image=data / "portraits" / PORTRAITS[i % len(PORTRAITS)],
                             audio=clips[(i // len(PORTRAITS)) % len(clips)], transcript=srt,
                             output=f"../out/real{i:02d}.mp4")
        rows.append({"id": f"real{i:02d}", "dialogue": f"dialogues/{d.name}", "seed": i})
    rows += list(extra_rows)
    m = tmp / "real.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_inline_rows_with_a_transcript_file_or_none_run_no_speech_recognition(tmp_path):
    """Inline rows (no dialogue.yaml) with `transcript: none` or a words file: both render, and
    no Whisper pass runs (a farm with scripts); a row without it transcribes its audio."""
    real_manifest(tmp_path, 0)                              # the shared audio clips + SRT
    data = mf.need_shared()
    portrait = str(data / "portraits" / "s1.jpg")
    rows = [{"id": "none", "reference": portrait, "audio": "audio/clip0.wav", "transcript": "none",
             "output": "out/none.mp4", "preset": "draft"},
            {"id": "srt", "reference": portrait, "audio": "audio/clip1.wav", "transcript": "audio/words.srt",
             "output": "out/srt.mp4", "preset": "draft"}]
    m = tmp_path / "inline.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = cli_batch(m)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert (tmp_path / "out" / "none.mp4").is_file() and (tmp_path / "out" / "srt.mp4").is_file()
    assert not list((tmp_path / "cache").rglob("transcript/**/*.meta.json")), "a Whisper pass ran"
    rows.append({"id": "asr", "reference": portrait, "audio": "audio/clip0.wav", "output": "out/asr.mp4",
                 "preset": "draft"})
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = cli_batch(m)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert list((tmp_path / "cache").rglob("transcript/**/*.meta.json"))


def bad_dialogue_row(tmp: Path, rid: str, image: Path, audio: Path) -> dict:
    (tmp / "dialogues").mkdir(exist_ok=True)
    d = mf.dialogue_yaml(tmp / "dialogues" / f"{rid}.yaml", image=image, audio=audio,
                         transcript=tmp / "audio" / "words.srt", output=f"../out/{rid}.mp4")
    return {"id": rid, "dialogue": f"dialogues/{d.name}"}


def cli_batch(manifest: Path, *args: str, env=None) -> subprocess.Popen:
    """`echo-cli batch` with the test's own cache folder (the cache the kills hit is the one checked)."""
    e = {**os.environ, "ECHO_CACHE_DIR": str(manifest.parent / "cache"), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(mf.cli_cmd("batch", str(manifest), "--allow-outside", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=str(manifest.parent))


def mixed_bad_rows(tmp: Path, n: int) -> list[dict]:
    """n bad rows cycling through: missing file, no face (cat), corrupt audio, 16x16 image."""
    real_manifest(tmp, 0)                                   # the shared audio clips + SRT
    cat = mf.image_variant(tmp / "cat.png", "cat")
    tiny = mf.image_variant(tmp / "tiny.png", "tiny")
    bad_wav = mf.corrupt_audio(tmp / "corrupt.wav")
    data = mf.need_shared()
    rows = []
    for i in range(n):
        kind = ("missing", "noface", "badaudio", "tinyface")[i % 4]
        rid = f"bad_{kind}{i:02d}"
        if kind == "missing":
            rows.append({"id": rid, "reference": "nope.jpg", "audio": "audio/clip0.wav", "output": f"out/{rid}.mp4"})
        elif kind == "noface":
            rows.append(bad_dialogue_row(tmp, rid, cat, tmp / "audio" / "clip0.wav"))
        elif kind == "badaudio":
            rows.append(bad_dialogue_row(tmp, rid, data / "portraits" / "s1.jpg", bad_wav))
        else:
            rows.append(bad_dialogue_row(tmp, rid, tiny, tmp / "audio" / "clip1.wav"))
    return rows


def test_real_mixed_batch_with_sigkills_then_rerun(tmp_path):
    """30 jobs (20 good, 10 bad) on 2 workers; workers SIGKILLed at random moments over several
    runs; a final rerun ends with every good output present, whole and rendered once, every bad
    row reported with its reason, and no partial file anywhere (issue 9 and issue 10)."""
    m = real_manifest(tmp_path, 20, mixed_bad_rows(tmp_path, 10))
    rng = random.Random(11)
    kills = 0
    for _round in range(3):                         # several interrupted runs, each with kills
        p = cli_batch(m, "--workers", "2", "--retries", "0", "--skip-invalid")
        try:
            for _ in range(2):
                # a random moment while workers run: wait for them, then 0.5-4 s more (a fixed
                # 3-12 s from the start let a fast machine finish the round before any kill)
                t_end = time.time() + 60
                while time.time() < t_end and p.poll() is None and not worker_pids(p.pid):
                    time.sleep(0.1)
                t_end = time.time() + rng.uniform(0.5, 4.0)
                while time.time() < t_end and p.poll() is None:
                    time.sleep(0.1)
                pids = worker_pids(p.pid)
                if pids and p.poll() is None:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
            _, err = p.communicate(timeout=1800)
        finally:
            p.kill()
        assert p.returncode in (0, 8), err[-3000:]
        assert "Traceback" not in err
        assert leftovers(tmp_path / "out") == []
    assert kills >= 3
    p = cli_batch(m, "--workers", "2", "--skip-invalid")
    out, err = p.communicate(timeout=1800)
    assert p.returncode == 8, err[-3000:]                    # the bad rows, and only them
    last = {}
    for x in map(json.loads, (tmp_path / "real.report.jsonl").read_text().splitlines()):
        if x["type"] == "job":
            last[x["id"]] = x
    good = [k for k in last if k.startswith("real")]
    bad = [k for k in last if not k.startswith("real")]
    assert len(good) == 20 and len(bad) == 10
    assert all(last[k]["status"] in ("done", "skipped") for k in good)
    for k in bad:
        x = last[k]
        assert x["status"] in ("failed", "invalid"), x
        assert x["error"]["message"] and x["error"]["kind"] in ("input", "spec"), x
    m_ok = load_manifest(m, allow_outside=True)
    for job in m_ok.jobs:
        if job.id.startswith("real"):
            assert J.is_done(job.output, J.job_hash(job)) and mf.valid_video(job.output)
        else:
            assert not job.output.exists()
    assert leftovers(tmp_path / "out") == []
    assert not list((tmp_path / "out").glob("*.echo.lock"))
    # the cache the kills hit is consistent: a job re-rendered from it comes out whole
    victim = next(j for j in m_ok.jobs if j.id == "real07")
    victim.output.unlink()
    p = cli_batch(m, "--workers", "1", "--skip-invalid")
    out, err = p.communicate(timeout=1200)
    assert p.returncode == 8, err[-3000:]
    assert J.is_done(victim.output, J.job_hash(victim)) and mf.valid_video(victim.output)


def test_real_bad_rows_are_reported_and_good_jobs_complete(tmp_path):
    real_manifest(tmp_path, 0)
    cat = mf.image_variant(tmp_path / "cat.png", "cat")
    bad_wav = mf.corrupt_audio(tmp_path / "corrupt.wav")
    data = mf.need_shared()
    bad = [{"id": "missing", "reference": "nope.jpg", "audio": "audio/clip0.wav", "output": "out/missing.mp4"},
           bad_dialogue_row(tmp_path, "noface", cat, tmp_path / "audio" / "clip0.wav"),
           bad_dialogue_row(tmp_path, "badaudio", data / "portraits" / "s1.jpg", bad_wav)]
    m = real_manifest(tmp_path, 3, bad)
    p = cli_batch(m, "--workers", "2", "--skip-invalid")
    out, err = p.communicate(timeout=1200)
    assert p.returncode == 8, err[-3000:]
    recs = {x["id"]: x for x in reports(tmp_path) if x["type"] == "job"}
    assert recs["missing"]["status"] == "invalid" and "nope.jpg" in recs["missing"]["error"]["message"]
    assert recs["missing"]["line"] == 4                      # reported under its own id, with its line
    assert recs["noface"]["status"] == "failed" and recs["noface"]["error"]["kind"] == "input", recs["noface"]
    assert recs["noface"]["attempts"] == 1                   # bad input is never retried
    assert recs["badaudio"]["status"] == "failed" and recs["badaudio"]["error"]["kind"] == "input", recs["badaudio"]
    for i in range(3):
        assert recs[f"real{i:02d}"]["status"] == "done", recs[f"real{i:02d}"]
        assert mf.valid_video(tmp_path / "out" / f"real{i:02d}.mp4")
    assert not (tmp_path / "out" / "noface.mp4").exists() and not (tmp_path / "out" / "badaudio.mp4").exists()
    assert "Traceback" not in err
    assert leftovers(tmp_path / "out") == []


def test_real_shards_cover_every_job_once(tmp_path):
    m = real_manifest(tmp_path, 6)
    procs = [cli_batch(m, "--shard", f"{i}/3") for i in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=1200)
        assert p.returncode == 0, err
    done = sorted(x["id"] for x in reports(tmp_path) if x.get("status") == "done")
    assert done == [f"real{i:02d}" for i in range(6)]
    assert_complete(tmp_path, m)


def test_batch_wide_model_error_stops_the_batch(tmp_path):
    """No checkpoint: after two identical model errors the rest is not attempted; exit 5."""
    m = small_manifest(tmp_path, 8)
    r = run_batch_proc(tmp_path, m, workers=1, job_fn="media_factory:model_missing_render")
    assert r.returncode == 5, r.stderr
    assert "batch stopped" in r.stderr and "(fix:" in r.stderr
    recs = [x for x in reports(tmp_path) if x["type"] == "job"]
    assert len(recs) == 8 and all(x["status"] == "failed" for x in recs)
    assert sum(x["attempts"] == 0 for x in recs) >= 5           # not attempted
    assert not (tmp_path / "out").exists() or leftovers(tmp_path / "out") == []


def test_a_batch_stopped_by_a_missing_model_prints_its_summary_under_json(tmp_path):
    m = small_manifest(tmp_path, 4)
    r = subprocess.run(mf.cli_cmd("--json", "batch", str(m)), capture_output=True, text=True, timeout=600,
                       cwd=str(tmp_path), env={**os.environ, "ECHO_CHECKPOINT": str(tmp_path / "nope.safetensors"),
                                               "ECHO_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 5, r.stderr[-2000:]
    payload = json.loads(r.stdout)          # the error and, beside it, the counts (it was the error alone)
    assert payload["error"]["kind"] == "model" and payload["total"] == 4 and payload["failed"] == 4


def test_cli_json_says_not_ok_when_no_job_completed(tmp_path):
    """Every job fails (the faceless 32 px image): exit 8, and the one JSON object must not
    claim success nor the human line that "the others completed"."""
    m = small_manifest(tmp_path, 2)
    r = subprocess.run(mf.cli_cmd("--json", "batch", str(m), "--workers", "1"), capture_output=True, text=True,
                       timeout=600, cwd=str(tmp_path))
    assert r.returncode == 8, r.stderr[-2000:]
    payload = json.loads(r.stdout)
    assert payload["ok"] is False and payload["failed"] == 2 and payload["done"] == 0
    # README: under --json a failure carries an `error` object (kind, exit_code, path, message, fix)
    assert payload["error"]["exit_code"] == 8 and payload["error"]["kind"] == "partial" and payload["error"]["fix"]
    assert "no job completed" in r.stderr and "the others completed" not in r.stderr
    job_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: line")]
    assert len(job_lines) == 2 and all("ref.png" in ln for ln in job_lines), job_lines   # the file at fault
    assert all("(fix: " in ln for ln in job_lines), job_lines                            # and the fix


def test_rows_with_their_own_broken_checkpoint_fail_alone(tmp_path):
    """Two rows in a row whose dialogues name a damaged checkpoint are those rows' bad input:
    the batch-wide stop (meant for the model every job uses) must not skip the good rows."""
    m = real_manifest(tmp_path, 2)
    data = mf.need_shared()
    ck = mf.truncated_checkpoint(tmp_path / "broken.safetensors")
    bad = []
    for rid in ("ck1", "ck2"):
        d = mf.dialogue_yaml(tmp_path / "dialogues" / f"{rid}.yaml", image=data / "portraits" / "s1.jpg",
                             audio=tmp_path / "audio" / "clip0.wav", transcript=tmp_path / "audio" / "words.srt",
                             output=f"../out/{rid}.mp4", checkpoint=ck)
        bad.append({"id": rid, "dialogue": f"dialogues/{d.name}"})
    rows = bad + [json.loads(x) for x in m.read_text().splitlines()]          # the bad ones first
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = cli_batch(m, "--workers", "1")
    out, err = p.communicate(timeout=1200)
    assert p.returncode == 8, err[-3000:]
    recs = {x["id"]: x for x in reports(tmp_path) if x["type"] == "job"}
    assert recs["ck1"]["error"]["kind"] == recs["ck2"]["error"]["kind"] == "model"
    assert recs["real00"]["status"] == recs["real01"]["status"] == "done"
    assert "batch stopped" not in err


def test_report_may_not_overwrite_the_manifest_or_an_input(tmp_path):
    m = small_manifest(tmp_path, 2)
    before = m.read_bytes()
    for target in (m, tmp_path / "in" / "a.wav", tmp_path / "in"):
        r = subprocess.run(mf.cli_cmd("batch", str(m), "--report", str(target)), capture_output=True, text=True,
                           timeout=300, cwd=str(tmp_path))
        assert r.returncode == 7 and "Traceback" not in r.stderr and "report" in r.stderr, r.stderr[-2000:]
    assert m.read_bytes() == before and (tmp_path / "in" / "a.wav").stat().st_size > 1000
    # a report whose folder cannot be made (here: below a file; likewise a read-only share):
    # exit 7 before any job (it was an internal error)
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--report", str(tmp_path / "in" / "a.wav" / "sub" / "r.jsonl")),
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 7 and "report cannot be written" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.rglob("*.mp4"))


def test_report_may_not_overwrite_what_a_dialogue_names_or_a_done_marker(tmp_path):
    """A dialogue row's media are its inputs too (the report overwrote a user video named
    only inside the dialogue, and the job then failed on its own emptied input); the done
    marker and lock beside an output are the batch's own files."""
    small_manifest(tmp_path, 1)
    d = tmp_path / "talk"
    d.mkdir()
    (d / "dialogue.yaml").write_text("version: 1\navatar:\n  image: ../in/ref.png\n  audio: ../in/a.wav\n"
                                     "output:\n  path: ../out/talk.mp4\n")
    m = tmp_path / "d.jsonl"
    m.write_text(json.dumps({"id": "talk", "dialogue": "talk"}) + "\n")
    wav = (tmp_path / "in" / "a.wav").read_bytes()
    for target, needle in ((tmp_path / "in" / "a.wav", "avatar.audio"),
                           (tmp_path / "out" / "talk.mp4.echo.json", "done marker")):
        r = subprocess.run(mf.cli_cmd("batch", str(m), "--report", str(target)), capture_output=True, text=True,
                           timeout=300, cwd=str(tmp_path))
        assert r.returncode == 7 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert (tmp_path / "in" / "a.wav").read_bytes() == wav and not (tmp_path / "out").exists()


def test_emit_keeps_names_on_their_comment_line(tmp_path):
    m = small_manifest(tmp_path, 2)
    evil = tmp_path / "evil\ntouch PWNED\n.jsonl"
    evil.write_bytes(m.read_bytes())
    for kind in ("slurm", "k8s"):
        r = subprocess.run(mf.cli_cmd("batch", str(evil), "--emit", kind, "--mem", "8G"), capture_output=True,
                           text=True, timeout=300, cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr[-2000:]
        comment = r.stdout.splitlines()[1 if kind == "slurm" else 0]       # the name, escaped, on one line
        assert comment.startswith("# ") and "evil\\ntouch PWNED\\n.jsonl" in comment, comment
        if kind == "slurm":     # elsewhere the name is one quoted word of the command
            cmd = next(ln for ln in r.stdout.split("\n#")[-1].split("\n") if ln.startswith("echo-cli"))
            assert cmd.startswith("echo-cli batch '")
        if kind == "k8s":
            assert "memory: 8Gi" in r.stdout and "8Gii" not in r.stdout
    r = subprocess.run(mf.cli_cmd("batch", str(m), "--emit", "slurm", "--partition", "x\ntouch P"),
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 2 and "--partition" in r.stderr
