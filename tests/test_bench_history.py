"""The bench history: headline figures per target, the previous comparable run, regressions
flagged in the right direction, damaged lines skipped, and `echo-cli bench history`."""
from __future__ import annotations

import json
import subprocess
import sys

from echo_cli.bench import history as H

XEON = {"cpu": "Xeon", "affinity": 2, "git": "abc", "load_1min": 0.5}
EPYC = {"cpu": "EPYC", "affinity": 2, "git": "abc", "load_1min": 0.5}


def e2e(time, cold, warm, machine=XEON, target="end-to-end-avatar"):
    return {"target": target, "time": time, "command": "echo-cli bench end-to-end", "machine": machine,
            "rows": [{"run": "cold", "ok": True, "rtf": cold}, {"run": "warm", "ok": True, "rtf": warm}]}


def gen(time, fps, threads=2, machine=XEON):
    return {"target": "generate", "time": time, "command": "echo-cli bench generate", "machine": machine,
            "rows": [{"device": "cpu", "threads": threads, "backend": "sdpa", "user_ctx": True, "fps": fps}]}


def test_headline_figures_of_each_target():
    assert H.headline(e2e("t", 0.4, 0.2)) == {"cold RTF": (0.4, "lower"), "warm RTF": (0.2, "lower")}
    assert H.headline(gen("t", 500.0)) == {"cpu 2t sdpa user frames/s": (500.0, "higher")}
    render = {"target": "render", "rows": [{"size": 512, "ratio": 2.5}]}
    assert H.headline(render) == {"512 px (render+encode)/floor": (2.5, "lower")}
    batch = {"target": "batch", "rows": [{"workers": 2, "real_time_factor": 0.34}]}
    assert H.headline(batch) == {"2 worker(s) RTF": (0.34, "lower")}
    pre = {"target": "preprocess", "rows": [], "summary": {"face_ms_per_frame_512": 2.26}}
    assert H.headline(pre) == {"face track ms/frame (512 px)": (2.26, "lower")}
    # a cache-only or transcription-only run has figures of its own (it was "the first run" forever)
    pre = {"target": "preprocess", "rows": [], "summary": {"face_ms_per_frame_512": None, "cache_speedup": 41.0,
                                                           "transcription_rtf": {"faster-whisper": 0.3}}}
    assert H.headline(pre) == {"cache speed-up": (41.0, "higher"), "transcription RTF (faster-whisper)": (0.3, "lower")}
    failed = e2e("t", 0.4, 0.2)
    failed["rows"][1]["ok"] = False
    assert list(H.headline(failed)) == ["cold RTF"]           # a failed run has no figure


def test_previous_run_is_same_target_same_machine_same_figures_and_regressions_point_the_right_way():
    old = e2e("1", 0.40, 0.20)
    other_machine = e2e("2", 0.90, 0.90, machine=EPYC)
    other_target = e2e("3", 0.90, 0.90, target="end-to-end")
    new = e2e("4", 0.46, 0.19)
    records = [old, other_machine, other_target, new]
    assert H.previous(new, records) is old
    rows = {r["figure"]: r for r in H.compare(new, old)}
    assert rows["cold RTF"]["regression"] and round(rows["cold RTF"]["change"], 2) == 0.15
    assert not rows["warm RTF"]["regression"]                 # lower RTF is better
    slow, fast = gen("5", 400.0), gen("6", 600.0)
    assert H.compare(slow, fast)[0]["regression"] and not H.compare(fast, slow)[0]["regression"]
    one_thread = gen("7", 300.0, threads=1)                   # other figures: not comparable
    assert H.previous(one_thread, [fast, one_thread]) is None
    assert "first run" in H.describe(one_thread, None, [])
    assert "REGRESSION" in H.describe(slow, fast, H.compare(slow, fast))


def test_history_file_with_a_damaged_line_and_the_cli_listing(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(e2e("2026-12-06T10:00:00", 0.4, 0.2)) + "\n" + '{"target": "gen' + "\n"
                    + json.dumps(gen("2026-12-06T11:00:00", 500.0)) + "\n")
    assert [r["target"] for r in H.read(path)] == ["end-to-end-avatar", "generate"]
    assert H.read(tmp_path / "missing.jsonl") == []
    r = subprocess.run([sys.executable, "-m", "echo_cli", "--json", "bench", "history", "generate",
                        "--history", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)["runs"]
    assert [x["target"] for x in runs] == ["generate"] and runs[0]["figures"] == {"cpu 2t sdpa user frames/s": 500.0}
    r = subprocess.run([sys.executable, "-m", "echo_cli", "bench", "history", "--last", "1", "--history", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and "generate" in r.stdout, r.stdout
    r = subprocess.run([sys.executable, "-m", "echo_cli", "bench", "render", "extra"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "unexpected argument 'extra'" in r.stderr


def test_a_history_that_cannot_be_written_fails_before_the_bench(tmp_path):
    """--history under a missing folder of a pseudo-filesystem, or naming a folder: an internal
    error (exit 1) after the whole bench had run; now exit 7 before measuring. Listing a folder
    as history, and an unknown target to list, are typed errors too."""
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "echo_cli", *args], capture_output=True, text=True, timeout=300,
                              env={**__import__("os").environ, "ECHO_CACHE_DIR": str(tmp_path / "cache")})

    for bad in ("/proc/nope/h.jsonl", str(tmp_path)):
        r = cli("bench", "generate", "--quick", "--no-doc", "--out", str(tmp_path / "b.json"), "--history", bad)
        assert r.returncode == 7 and "cannot write the bench history" in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "b.json").exists()             # failed before measuring anything
    r = cli("bench", "history", "--history", str(tmp_path))
    assert r.returncode == 4 and "cannot read the bench history" in r.stderr and "Traceback" not in r.stderr
    r = cli("bench", "history", "bogus")
    assert r.returncode == 2 and "unknown bench target 'bogus'" in r.stderr
