"""End-to-end bench, long-dialogue builder, subprocess memory meter, light CLI start.

Structure and invariants only: no wall-clock thresholds (the machine is shared). The
end-to-end run is real: a few seconds of looped real media, rendered by `api.render` in
fresh processes (cold cache, then warm), draft preset, against a real ffmpeg floor.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from echo_cli.bench import end_to_end as e2e
from echo_cli.bench.common import BenchArgs


# ---------------------------------------------------------------- light start
HEAVY = ("torch", "mediapipe", "cv2", "numpy", "scipy", "whisperx", "faster_whisper", "ctranslate2",
         "transformers", "sentence_transformers", "skimage", "sklearn", "ray", "av", "pyannote.audio",
         "lightning")  # (bare "pyannote" is an empty namespace package a .pth file loads at start)


def test_help_path_imports_no_heavy_modules():
    """`echo-cli --help` (all commands registered) must not import torch, mediapipe, numpy..."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.argv = ["echo-cli", "--help"]
        import echo_cli.cli.main as m
        try:
            m.run()
        except SystemExit:
            pass
        print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"--help imports heavy modules: {loaded}"


def test_help_startup_measurement():
    r = e2e.help_startup(repeats=2)
    assert r["runs"] == 2 and 0 < r["best_s"] <= r["median_s"]
    assert "--help" in r["command"]


# ---------------------------------------------------------------- stage profiler
def test_profiler_charges_exclusive_time_and_generators():
    prof = e2e.StageProfiler()

    def inner():
        time.sleep(0.02)
        return 1

    def gen(n):
        for i in range(n):
            time.sleep(0.005)
            yield i

    inner_t = prof.wrap("inner", inner)
    gen_t = prof.wrap("gen", gen)

    def outer():
        time.sleep(0.01)
        return inner_t() + sum(gen_t(3))

    outer_t = prof.wrap("outer", outer)
    t0 = time.perf_counter()
    assert outer_t() == 4
    total = time.perf_counter() - t0
    ex = prof.exclusive
    assert prof.calls == {"outer": 1, "inner": 1, "gen": 5}       # gen: call + 3 items + StopIteration
    assert ex["inner"] >= 0.02 and ex["gen"] >= 0.015 and ex["outer"] >= 0.01
    # exclusive times partition the outer call: nothing counted twice
    assert abs(ex["outer"] + ex["inner"] + ex["gen"] - total) < 0.01
    res = prof.result(total)
    assert set(res["stages"]) == set(e2e.STAGE_POINTS) | {"other"}


def test_profiler_install_wraps_imported_copies_and_uninstalls():
    import echo_cli.media.mux as mux_mod
    import echo_cli.media.video_io as vio

    orig_iter, orig_write = vio.iter_frames, vio.VideoWriter.write
    prof = e2e.StageProfiler().install()
    try:
        assert vio.iter_frames.__echo_stage__ == "decode"
        assert vio.VideoWriter.__dict__["write"].__echo_stage__ == "encoding"
        assert mux_mod.mux.__echo_stage__ == "muxing"
        for mod in list(sys.modules.values()):     # no module keeps an unwrapped copy
            if getattr(mod, "__name__", "").startswith("echo_cli") and getattr(mod, "iter_frames", None):
                assert getattr(mod.iter_frames, "__echo_stage__", None) == "decode", mod.__name__
    finally:
        prof.uninstall()
    assert vio.iter_frames is orig_iter and vio.VideoWriter.write is orig_write


# ---------------------------------------------------------------- memory meter
def test_run_measured_sees_child_memory_and_exit_code():
    from echo_cli.bench.memory import run_measured, slope_mb_per_min

    code = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
    big = run_measured([sys.executable, "-c", code], interval=0.05)
    small = run_measured([sys.executable, "-c", "import time; time.sleep(1.0)"], interval=0.05)
    assert big.rc == 0 and small.rc == 0 and not big.timed_out
    assert big.peak_mb >= 300 > small.peak_mb
    assert big.max_child_rss_mb >= 300
    assert big.trace and max(m for _, m in big.trace) == pytest.approx(big.peak_mb, abs=0.2)
    fail = run_measured([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert fail.rc == 3
    killed = run_measured([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert killed.timed_out and killed.rc is None
    assert slope_mb_per_min([(1, 100.0), (10, 100.0), (60, 100.0)]) == 0.0
    assert slope_mb_per_min([(1, 100.0), (11, 120.0)]) == pytest.approx(2.0)


# ---------------------------------------------------------------- long dialogues
def test_longform_builds_looped_real_media(shared_data, tmp_path):
    from echo_cli.bench.longform import build_dialogue
    from echo_cli.dialogue import load_dialogue
    from echo_cli.media.probe import probe

    path = build_dialogue(34 / 60, tmp_path / "lf", shared_data, user="video")
    spec = load_dialogue(path)
    assert spec.output.layout == "side-by-side"
    for p in (spec.avatar.audio, spec.user.audio, spec.user.video):
        info = probe(p)
        assert info.duration == pytest.approx(34.0, abs=0.1), p
    assert probe(spec.user.video).height == 160
    sp = [(t.speaker, t.start, t.end) for t in spec.turns]
    assert sp == [("avatar", 0.0, 16.0), ("user", 16.0, 32.0), ("avatar", 32.0, 34.0)]
    # the cycle really alternates: avatar speaks in its turn, the user in theirs
    from echo_cli.media.audio_io import load_audio
    import numpy as np

    a, u = load_audio(spec.avatar.audio), load_audio(spec.user.audio)
    rms = lambda w, s, e: float(np.sqrt(np.mean(w[int(s * 16000):int(e * 16000)] ** 2)))  # noqa: E731
    assert rms(a, 1, 15) > 10 * rms(a, 17, 31) and rms(u, 17, 31) > 10 * rms(u, 1, 15)


# ---------------------------------------------------------------- a real short run
@pytest.fixture(scope="module")
def e2e_run(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    hist = d / "history.jsonl"
    hist.write_text('{"target": "earlier"}\n')
    args = BenchArgs(out=d / "e2e.json", doc=d / "perf.md", history=hist, quick=True,
                     extra={"data": str(shared_data), "seconds": "4", "user": "video", "repeats": "2"},
                     command="echo-cli bench end-to-end --quick --set seconds=4")
    rec = e2e.run(args)
    return rec, args


def test_e2e_record_structure(e2e_run):
    rec, args = e2e_run
    runs = {r["run"]: r for r in rec["rows"]}
    assert set(runs) == {"cold", "warm"}
    for name, r in runs.items():
        assert r["ok"], f"{name} render failed: {r['error']}"
        for s in e2e.STAGES:
            assert f"stage_{s}" in r and r[f"stage_{s}"] >= 0
        assert r["duration_s"] == pytest.approx(4.0, abs=0.1)
        assert r["rtf"] == pytest.approx(r["process_s"] / r["duration_s"], abs=2e-3)
        assert r["fps"] == pytest.approx(r["frames"] / r["process_s"], abs=2e-3)
        assert r["peak_mb"] > 0
        # the calling thread's stages partition render(): their sum is render()'s wall time;
        # each stage's total (the generation producer thread included) is at least that share
        assert sum(r[f"main_{s}"] for s in e2e.STAGES) == pytest.approx(r["render_s"], abs=0.05)
        for s in e2e.STAGES:
            assert r[f"stage_{s}"] >= r[f"main_{s}"] - 1e-3
        assert r["stage_generation"] > r["main_generation"]    # the producer thread generated
        assert r["process_s"] >= r["render_s"]
        assert r["floor_s"] > 0 and r["render_side_vs_floor"] > 0
    # cold: new inputs are preprocessed; warm: the cache answers everything, the avatar's
    # reference portrait included (api.reenact caches its track by content hash)
    calls = {r["label"]: r["profile"]["calls"] for r in rec["runs"]}
    assert runs["cold"]["stage_face track"] > 0 and runs["cold"]["stage_transcription"] > 0
    assert calls["cold"].get("transcription", 0) >= 1 and calls["warm"].get("transcription", 0) == 0
    assert calls["cold"]["face track"] >= 1 and calls["warm"].get("face track", 0) == 0
    assert calls["warm"].get("audio features", 0) < calls["cold"]["audio features"]
    assert "mediapipe" in runs["cold"]["heavy_modules"] and runs["warm"]["heavy_modules"] == []
    for s in ("generation", "rendering", "encoding", "muxing"):
        assert runs["warm"][f"stage_{s}"] > 0, s
    assert rec["floor"]["frames"] == runs["warm"]["frames"]
    assert set(rec["acceptance"]) >= {"help_under_0.5s", "rtf_cold_le_0.5", "rtf_warm_le_0.25",
                                      "render_encode_le_3x_floor"}


def test_e2e_outputs_json_doc_history(e2e_run):
    rec, args = e2e_run
    saved = json.loads(Path(args.out).read_text())
    assert saved["target"] == "end-to-end-4s" and saved["rows"] == json.loads(json.dumps(rec["rows"], default=str))
    doc = Path(args.doc).read_text()
    assert "<!-- bench:end-to-end-4s -->" in doc and "<!-- /bench:end-to-end-4s -->" in doc
    assert args.command in doc and "| acceptance |" in doc
    lines = Path(args.history).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"target": "earlier"}
    assert json.loads(lines[1])["target"] == "end-to-end-4s"


# ---------------------------------------------------------------- warm render: no input-only imports
def test_warm_cli_render_imports_no_input_only_libraries(shared_data, tmp_path):
    """`echo-cli render` on inputs already in the cache runs no face tracker, transcriber or
    text-model load, so it must not even import them (each costs seconds of start-up)."""
    import os

    from echo_cli.bench.longform import build_dialogue

    spec = build_dialogue(4 / 60, tmp_path / "lf", shared_data, user="video", preset="draft")
    env = dict(os.environ, ECHO_CACHE_DIR=str(tmp_path / "cache"))
    code = textwrap.dedent(f"""
        import json, sys
        sys.argv = ["echo-cli", "render", {str(spec)!r}]
        import echo_cli.cli.main as m
        rc = 0
        try:
            m.run()
        except SystemExit as e:
            rc = e.code or 0
        print(json.dumps({{"rc": rc, "heavy": [h for h in {e2e.HEAVY_ON_WARM!r} if h in sys.modules]}}))
    """)

    def render() -> dict:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold = render()
    assert cold["rc"] == 0
    # the check can fail: new inputs do load the tracker and the transcriber
    assert {"mediapipe", "faster_whisper"} <= set(cold["heavy"]), cold
    warm = render()
    assert warm["rc"] == 0 and warm["heavy"] == [], f"a warm render imported {warm['heavy']}"
