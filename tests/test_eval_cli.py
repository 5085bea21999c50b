"""`echo-cli eval` end to end on real clips, an mp4 written by the tool's own writer/muxer,
a clip without sound, bad input, and the baseline suite (ceiling vs floor) on short
held-out segments."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from echo_cli.eval import report as R

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import os
    e = dict(os.environ)
    e["ECHO_CACHE_DIR"] = str(tmp_path_factory.mktemp("eval-cache"))
    return e


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "echo_cli", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)


def _check_schema(doc: dict) -> None:
    assert doc["schema"] == R.SCHEMA and doc["schema_version"] == R.SCHEMA_VERSION
    for res in doc["results"]:
        assert res["schema_version"] == R.SCHEMA_VERSION
        for group, fields in R.FIELDS.items():
            for key, _, _ in fields:
                assert key in res[group], f"{group}.{key} missing"        # stable: always present


def test_eval_real_clip_writes_json_table_and_plot(shared_data, env, tmp_path):
    clip = shared_data / "talking" / "r3_May_5s.mp4"
    r = cli("--json", "eval", clip, "--out", tmp_path / "o", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["ok"] is True
    doc = json.loads((tmp_path / "o" / "eval.json").read_text())
    _check_schema(doc)
    res = doc["results"][0]
    assert res["technical"]["n_frames"] == 125 and res["technical"]["has_audio"]
    assert res["temporal"]["face_lost_fraction"] == 0.0
    assert res["temporal"]["frozen_fraction"] < 0.2
    assert res["lip_sync"]["env_corr"] is not None
    assert (tmp_path / "o" / res["plot"]).stat().st_size > 5000
    assert "| metric |" in (tmp_path / "o" / "eval.md").read_text()


def test_eval_tool_written_mp4_with_turns(shared_data, env, tmp_path):
    """An H.264/AAC mp4 made by media.VideoWriter + media.mux (what `render` writes)."""
    from echo_cli.media.audio_io import load_audio
    from echo_cli.media.mux import mux
    from echo_cli.media.video_io import VideoWriter, iter_frames

    src = shared_data / "talking" / "grid_lrwp9a.mp4"
    with VideoWriter(tmp_path / "v.mp4", 25.0) as w:
        for fr in iter_frames(src):
            w.write(fr)
    mux(tmp_path / "v.mp4", load_audio(src), tmp_path / "out.mp4")
    (tmp_path / "turns.json").write_text(json.dumps([{"speaker": "user", "start": 0.0, "end": 0.8},
                                                     {"speaker": "avatar", "start": 0.8, "end": 3.0}]))
    r = cli("eval", tmp_path / "out.mp4", "--turns", tmp_path / "turns.json", "--ref", src,
            "--out", tmp_path / "e", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "e" / "eval.json").read_text())["results"][0]
    assert res["technical"]["video_codec"] == "h264" and res["technical"]["pix_fmt"] == "yuv420p"
    assert abs(res["technical"]["av_duration_diff_s"]) < 0.1
    assert res["conversation"]["speaking_source"] == "turns"
    # self-reenactment against its own source: lips nearly identical, image close
    assert res["lip_sync"]["lve"] < 0.05 and res["lip_sync"]["mouth_corr_ref"] > 0.9
    assert res["identity"]["ssim"] > 0.8 and res["identity"]["psnr"] > 25


def test_eval_clip_without_audio(shared_data, env, tmp_path):
    r = cli("eval", shared_data / "clips" / "d0.mp4", "--out", tmp_path / "n", "--no-plot", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "n" / "eval.json").read_text())["results"][0]
    assert res["technical"]["has_audio"] is False
    assert res["lip_sync"]["sync_confidence"] is None and res["lip_sync"]["env_corr"] is None
    assert res["behaviour"]["var_pose"] > 0


def test_eval_bad_input_exits_with_one_line(env, tmp_path):
    r = cli("eval", tmp_path / "missing.mp4", env=env)
    assert r.returncode == 4 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    r = cli("eval", env=env)
    assert r.returncode == 2
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 1000)
    r = cli("eval", tmp_path / "junk.mp4", env=env)
    assert r.returncode == 4, r.stderr
    r = cli("eval", "--suite", "no-such-suite", env=env)
    assert r.returncode == 4 and "talking-heldout" in r.stderr


def test_eval_refuses_a_still_image_and_never_prints_minus_zero(shared_data, env, tmp_path):
    """A portrait has no motion to measure: it used to give a table of 0.000 / -0.000."""
    r = cli("eval", shared_data / "portraits" / "s1.jpg", "--out", tmp_path / "ev", env=env)
    assert r.returncode == 4 and "still image" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "ev").exists()
    assert R._fmt(-0.00004) == "0.000" and R._fmt(-0.5) == "-0.500" and R._fmt(0.0) == "0.000"


def test_baselines_separate_ceiling_from_floor(shared_data):
    """Short held-out segments: every directional metric ranks the real clip above the
    still-image floor; the shifted baseline's lag is found."""
    from echo_cli.eval.suite import EvalOptions, baseline_suite

    files = [shared_data / "talking" / n for n in ("mt_German_20s.mp4", "sty_reagan_clip1.mp4")]
    opts = EvalOptions(sync=(REPO / "echo_cli" / "checkpoints" / "syncnet.safetensors").is_file())
    results, _ = baseline_suite(files, opts, seconds=8.0)
    means = R.mean_by_condition(results)
    sep = R.separation(means)
    for key in ("lip_sync.env_corr", "behaviour.sid_expression", "behaviour.sid_pose",
                "behaviour.var_expression", "behaviour.var_pose", "temporal.frozen_fraction",
                "temporal.jitter") + (("lip_sync.sync_confidence",) if opts.sync else ()):
        assert sep[key]["separates"], (key, sep[key])
    assert means["still"]["temporal"]["frozen_fraction"] == 1.0
    if opts.sync:
        mis = means["mismatched"]["lip_sync"]["sync_dist_at_zero"]
        assert means["ceiling"]["lip_sync"]["sync_dist_at_zero"] < mis
    doc = R.wrap(results)
    _check_schema(doc)
    json.dumps(doc, allow_nan=False)          # NaN never reaches the JSON


def test_side_by_side_render_is_measured_on_the_avatar_panel(shared_data, tmp_path, monkeypatch):
    """A side-by-side render shows user | avatar; eval must measure the avatar, which the
    render's `layout` tag tells it (real faces on both sides, the tool's writer and muxer)."""
    import numpy as np

    from echo_cli.eval.measure import measure_video
    from echo_cli.media.audio_io import load_audio
    from echo_cli.media.mux import mux
    from echo_cli.media.video_io import VideoWriter, iter_frames

    monkeypatch.setenv("ECHO_CACHE_DIR", str(tmp_path / "cache"))
    left = iter_frames(shared_data / "talking" / "r3_May_5s.mp4", fps=25.0, max_frames=40)
    right = iter_frames(shared_data / "clips" / "d12.mp4", fps=25.0, max_frames=40)
    with VideoWriter(tmp_path / "v.mp4", 25.0) as w:
        for a, b in zip(left, right):
            w.write(np.concatenate([a, b], axis=1))
    wave = load_audio(shared_data / "talking" / "r3_May_5s.mp4")[: 16000 * 40 // 25]
    for layout in ("side-by-side", "avatar"):
        mux(tmp_path / "v.mp4", wave, tmp_path / f"{layout}.mp4", metadata={"layout": layout})
    sbs = measure_video(tmp_path / "side-by-side.mp4")
    width = sbs.info["width"]
    assert np.nanmean(sbs.landmarks[:, :, 0]) > width / 2          # the right panel's face
    assert "avatar's panel" in sbs.info["measured_face"]
    assert "measured_face" not in measure_video(tmp_path / "avatar.mp4").info
    # ... and eval.json says so (docs/evaluation.md; it stopped at the measurement)
    from echo_cli.eval.suite import EvalOptions, evaluate_file

    res = evaluate_file(tmp_path / "side-by-side.mp4", opts=EvalOptions(sync=False))[0]
    assert "avatar's panel" in res["technical"]["measured_face"]


def test_suite_measures_the_good_videos_when_one_is_bad(shared_data, env, tmp_path):
    """One unreadable video no longer aborts a suite: the others are measured and written,
    exit 8; nothing measurable is that failure's own exit; a manifest of the wrong kind is a
    spec error (3), not an internal one."""
    good = tmp_path / "good.mp4"
    good.write_bytes((shared_data / "clips" / "d12.mp4").read_bytes())
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 5000)
    (tmp_path / "suite.yaml").write_text("- {video: good.mp4}\n- {video: junk.mp4}\n")
    r = cli("eval", "--suite", tmp_path / "suite.yaml", "--out", tmp_path / "ev", "--no-sync", "--no-plot", env=env)
    assert r.returncode == 8 and "1 of 2 videos could not be measured" in r.stderr, r.stderr
    # the bad video's own line is the tool's error format (it was a log record, "ERROR echo_cli...")
    assert any(ln.startswith("error: ") and "junk.mp4" in ln and "(fix: " in ln for ln in r.stderr.splitlines()), r.stderr
    doc = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert [x["label"] for x in doc["results"]] == ["good.mp4"]
    assert doc["summary"]["failed"][0]["video"].endswith("junk.mp4")
    assert "junk.mp4" in (tmp_path / "ev" / "eval.md").read_text()
    (tmp_path / "bad.yaml").write_text("- {video: junk.mp4}\n")
    r = cli("eval", "--suite", tmp_path / "bad.yaml", "--out", tmp_path / "ev2", "--no-sync", env=env)
    assert r.returncode == 4 and not (tmp_path / "ev2").exists()
    (tmp_path / "num.yaml").write_text("- 42\n")
    for manifest in (good, tmp_path / "num.yaml"):
        r = cli("eval", "--suite", manifest, env=env)
        assert r.returncode == 3 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr


def test_turns_from_a_dialogue_folder(tmp_path):
    """--turns DIR reads DIR/dialogue.yaml, as `render DIR` does."""
    from echo_cli.eval.suite import load_turns

    d = tmp_path / "talk"
    d.mkdir()
    (d / "dialogue.yaml").write_text("version: 1\navatar: {image: a.png, audio: a.wav}\n"
                                     "turns:\n  - {speaker: avatar, start: 0, end: 2}\n  - {speaker: user, start: 2, end: 3}\n"
                                     "output: {path: o.mp4}\n")
    assert [(t.speaker, t.start, t.end) for t in load_turns(d)] == [("avatar", 0.0, 2.0), ("user", 2.0, 3.0)]


def test_a_turns_file_nested_too_deeply_is_a_spec_error(tmp_path):
    from echo_cli.errors import SpecError
    from echo_cli.eval.suite import load_turns

    p = tmp_path / "turns.json"
    p.write_text("[" * 100_000 + "]" * 100_000)       # was an internal RecursionError
    with pytest.raises(SpecError, match="nested too deeply"):
        load_turns(p)


def test_a_silent_track_is_not_speech_and_has_no_lag(shared_data, tmp_path):
    """A clip whose sound track is digital silence (clips/d3.mp4, a listener): every frame was
    "speaking" (each within 25 dB of its own silence) and an envelope lag of 0 was reported
    beside a null correlation."""
    import numpy as np

    from echo_cli.eval.measure import voice_activity
    from echo_cli.eval.suite import EvalOptions, evaluate_file

    assert not voice_activity(np.zeros(16000 * 2, np.float32), 25.0, 50).any()
    speech = load_audio_for_test(shared_data)
    assert voice_activity(speech, 25.0, int(len(speech) / 16000 * 25)).mean() > 0.3
    res = evaluate_file(shared_data / "clips" / "d3.mp4", opts=EvalOptions(sync=False))[0]
    assert res["conversation"]["speaking_fraction"] == 0.0
    assert res["lip_sync"]["env_corr"] is None and res["lip_sync"]["env_lag_frames"] is None


def load_audio_for_test(shared_data):
    from echo_cli.media.audio_io import load_audio

    return load_audio(shared_data / "audio" / "RD_Radio31_000.wav")
