"""The CLI as a user meets it: the real entry point in a subprocess (exit codes, stdout/stderr)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echo_cli.errors import EXIT_CODES

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["render", "preprocess", "batch", "train", "eval", "bench", "doctor", "presets", "init", "reenact"]


def cli(*args, cwd=None, env=None):
    import os

    e = dict(os.environ, NO_COLOR="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "echo_cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=e, timeout=600)


def assert_one_line_error(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_help_lists_every_subcommand_and_version():
    r = cli("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert f"  {c} " in r.stdout, c
    for opt in ("--quiet", "--verbose", "--json", "--no-progress", "--version"):
        assert opt in r.stdout
    r = cli("--version")
    from echo_cli import __version__
    assert r.returncode == 0 and r.stdout.strip() == f"echo-cli {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(command):
    from typer.testing import CliRunner

    from echo_cli.cli.main import app

    r = CliRunner().invoke(app, [command, "--help"], prog_name="echo-cli")
    assert r.exit_code == 0, r.output
    assert "Example" in r.output and f"echo-cli {command}" in r.output.split("Example", 1)[1]


def test_help_imports_no_heavy_modules():
    """`echo-cli --help` stays fast: the CLI modules import no torch/mediapipe/numpy/cv2."""
    code = ("import sys; from echo_cli.cli.main import app; "
            "print(sorted(m for m in ('torch', 'mediapipe', 'numpy', 'cv2', 'whisperx', 'faster_whisper', "
            "'av', 'scipy', 'pydantic') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.fixture
def spec_dir(tmp_path):
    d = tmp_path / "talk"
    (d / "media").mkdir(parents=True)
    for n in ("a.png", "a.wav"):
        (d / "media" / n).write_bytes(b"x")
    return d


GOOD = "version: 1\navatar:\n  image: media/a.png\n  audio: media/a.wav\noutput:\n  path: out/x.mp4\n"


@pytest.mark.parametrize("text,code,where,field", [
    (GOOD.replace("  image:", "  imgae:"), 3, ":3:", "avatar.imgae"),            # typo
    (GOOD.replace("a.wav", "missing.wav"), 4, ":4:", "avatar.audio"),           # missing file
    (GOOD + "  colour: red\n", 3, ":7:", "output.colour"),                       # unknown key
    (GOOD + "seed: -1\n", 3, ":7:", "seed"),                                     # bad value
    (GOOD + "seed: 1\npreset: qualty\n", 3, ":8:", "preset"),                   # unknown preset
    (GOOD + "checkpoint: nope.safetensors\n", 5, ":7:", "checkpoint"),           # a missing model: exit 5
])
def test_bad_yaml_exits_with_one_line_and_writes_nothing(spec_dir, text, code, where, field):
    y = spec_dir / "d.yaml"
    y.write_text(text)
    before = sorted(p.relative_to(spec_dir) for p in spec_dir.rglob("*"))
    r = cli("render", y)
    assert_one_line_error(r, code)
    assert f"d.yaml{where}" in r.stderr and f"'{field}'" in r.stderr and "(fix: " in r.stderr
    assert r.stdout == ""
    assert sorted(p.relative_to(spec_dir) for p in spec_dir.rglob("*")) == before
    # --json: exactly one JSON object on stdout, the same one line on stderr
    r = cli("--json", "render", y)
    assert r.returncode == code
    payload = json.loads(r.stdout)
    assert payload["ok"] is False and payload["error"]["exit_code"] == code
    assert len(r.stdout.strip().splitlines()) == 1


def test_tab_indentation_gets_a_fix_that_says_so(spec_dir):
    y = spec_dir / "d.yaml"
    y.write_text(GOOD.replace("  image:", "\timage:"))
    r = cli("render", y)
    assert_one_line_error(r, 3)
    assert "d.yaml:3" in r.stderr and "indent with spaces" in r.stderr


def test_usage_errors_exit_2(spec_dir):
    y = spec_dir / "d.yaml"
    y.write_text(GOOD)
    r = cli("render", y, "--fps", "fast")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--fps" in r.stderr
    r = cli("render", y, "--preset", "nope")
    assert_one_line_error(r, 2)
    assert "draft" in r.stderr
    r = cli("render", y, "--crf", "99", "--dry-run")
    assert_one_line_error(r, 2)
    r = cli("render", y, "--device", "tpu", "--dry-run")
    assert_one_line_error(r, 2)
    assert "cuda" in r.stderr
    r = cli("render", y, "--seed", "-1", "--dry-run")
    assert_one_line_error(r, 2)
    assert "--seed" in r.stderr
    r = cli("render", y, "--output", spec_dir / "out.avi", "--dry-run")
    assert_one_line_error(r, 2)
    assert ".mp4" in r.stderr and not (spec_dir / "out.avi").exists()


def test_unwritable_cache_folder_is_an_output_error(tmp_path, shared_data):
    """A cache path that is a file (or a read-only home) is the user's setting to fix, not a bug."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    r = cli("render", REPO / "samples" / "real_dialogue.yaml", "--dry-run", "--output", tmp_path / "o.mp4",
            env={"ECHO_CACHE_DIR": str(blocker / "cache")})
    assert_one_line_error(r, 7)
    assert "ECHO_CACHE_DIR" in r.stderr and "cache folder" in r.stderr


def test_dry_run_checks_the_checkpoint_as_the_render_does(tmp_path, shared_data):
    """--dry-run said "valid" for a --checkpoint the render then refused; an image given as
    the checkpoint was reported as 'NAME.jpg.safetensors: not found', a file never named."""
    sample = REPO / "samples" / "real_dialogue.yaml"
    r = cli("render", sample, "--dry-run", "--output", tmp_path / "o.mp4", "--checkpoint", tmp_path / "nope.safetensors")
    assert_one_line_error(r, 5)
    assert "checkpoint not found" in r.stderr
    img = shared_data / "portraits" / "d12.jpg"
    r = cli("render", sample, "--dry-run", "--output", tmp_path / "o.mp4", "--checkpoint", img)
    assert_one_line_error(r, 5)
    assert "not a checkpoint" in r.stderr and "d12.jpg:" in r.stderr and ".jpg.safetensors" not in r.stderr


def test_json_version_is_one_json_object():
    r = cli("--json", "--version")
    assert r.returncode == 0 and json.loads(r.stdout)["version"]
    assert cli("--version").stdout.startswith("echo-cli ")


def test_device_and_attention_that_cannot_run_fail_before_any_work(shared_data):
    """--device cuda / --attention xformers on a machine without them: exit 6 (dependency)
    at validation, with the fix; on a CUDA machine with xformers the same flags validate."""
    import torch

    from echo_cli.model.attention import xformers_available

    y = REPO / "samples" / "real_dialogue.yaml"
    r = cli("render", y, "--device", "cuda", "--dry-run")
    if torch.cuda.is_available():
        assert r.returncode == 0, r.stderr
    else:
        assert_one_line_error(r, 6)
        assert "--device cpu" in r.stderr
    r = cli("render", y, "--device", "cpu", "--attention", "xformers", "--dry-run")
    assert_one_line_error(r, 6)
    assert "--attention sdpa" in r.stderr
    r = cli("render", y, "--device", "cpu", "--attention", "sdpa", "--dry-run")
    assert r.returncode == 0, r.stderr
    if torch.cuda.is_available() and xformers_available():
        assert cli("render", y, "--device", "cuda", "--attention", "xformers", "--dry-run").returncode == 0


def test_a_device_from_the_dialogue_that_cannot_run_names_its_line(tmp_path, shared_data):
    """`settings: {attention: xformers}` in the YAML: the error named a flag, not the file."""
    y = tmp_path / "d.yaml"
    y.write_text(f"version: 1\navatar:\n  image: {shared_data / 'portraits' / 's0.jpg'}\n"
                 f"  audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}\noutput: {{path: out/x.mp4}}\n"
                 "settings:\n  device: cpu\n  attention: xformers\n")
    r = cli("render", y, "--dry-run")
    assert_one_line_error(r, 6)
    assert "d.yaml:8 (settings.attention)" in r.stderr and "settings.attention: auto" in r.stderr, r.stderr


def test_doctor_reports_what_a_render_would_meet(tmp_path):
    """doctor said "ok" for a cache folder that cannot be made (preprocess then failed each
    file as an internal error), reported the packaged Whisper model while ECHO_WHISPER_MODEL_DIR
    pointed elsewhere, and exited 6 for a checkpoint problem (a render's code is 5)."""
    r = cli("doctor", env={"ECHO_CACHE_DIR": "/proc/echo-nope"})
    assert r.returncode == 7 and "cache folder" in r.stderr, r.stderr
    r = cli("doctor", env={"ECHO_WHISPER_MODEL_DIR": str(tmp_path)})
    assert r.returncode == 6 and "ECHO_WHISPER_MODEL_DIR" in r.stderr and "no model.bin" in r.stderr, r.stderr
    r = cli("doctor", env={"ECHO_CHECKPOINT": str(tmp_path / "nope.safetensors")})
    assert r.returncode == 5, r.stderr
    img = tmp_path / "face.png"
    img.write_bytes(b"x")
    r = cli("preprocess", img, env={"ECHO_CACHE_DIR": "/proc/echo-nope"})
    assert_one_line_error(r, 7)
    assert "cache folder" in r.stderr


def test_json_doctor_is_valid_json():
    r = cli("--json", "doctor")
    payload = json.loads(r.stdout)                      # exactly one JSON document on stdout
    names = {c["name"] for c in payload["checks"]}
    assert {"python", "torch", "mediapipe", "whisperx", "faster-whisper", "ffmpeg", "cuda",
            "xformers-attention", "checkpoint"} <= names
    assert any(n.startswith("model: MediaPipe") for n in names)
    missing = [c for c in payload["checks"] if c["required"] and not c["ok"]]
    assert payload["ok"] == (not missing)
    assert r.returncode == (0 if not missing else 6)
    for c in missing:                                   # each missing item comes with its fix
        assert c["fix"] and c["name"] in r.stderr


def test_presets_list_and_show():
    r = cli("presets")
    assert r.returncode == 0 and all(n in r.stdout for n in ("draft", "default", "quality"))
    r = cli("--json", "presets", "quality")
    data = json.loads(r.stdout)
    assert data["settings"]["steps"] >= 4 and "steps" in data["set_by_preset"]
    assert_one_line_error(cli("presets", "nope"), 2)


def test_init_writes_a_valid_commented_example(tmp_path):
    from echo_cli.dialogue import load_dialogue

    d = tmp_path / "new"
    r = cli("init", d)
    assert r.returncode == 0 and "echo-cli render" in r.stdout
    text = (d / "dialogue.yaml").read_text()
    assert text.count("#") > 10
    spec = load_dialogue(d / "dialogue.yaml", check_files=False)
    assert spec.output.path == d / "out" / "dialogue.mp4"
    r = cli("init", d)
    assert_one_line_error(r, 7)
    assert "--force" in r.stderr
    assert cli("init", d, "--force").returncode == 0
    # --sample never replaces files of the user's that carry the sample's names
    mine = tmp_path / "mine"
    (mine / "media").mkdir(parents=True)
    (mine / "media" / "avatar.png").write_bytes(b"my own portrait")
    r = cli("init", mine, "--sample")
    assert_one_line_error(r, 7)
    assert "avatar.png" in r.stderr and (mine / "media" / "avatar.png").read_bytes() == b"my own portrait"
    assert not (mine / "dialogue.yaml").exists()
    (tmp_path / "a_file").write_text("x")
    r = cli("init", tmp_path / "a_file")
    assert_one_line_error(r, 7)
    assert "a file, not a folder" in r.stderr
    r = cli("init", "", cwd=tmp_path)               # an empty argument wrote ./dialogue.yaml
    assert_one_line_error(r, 2)
    assert not (tmp_path / "dialogue.yaml").exists()


def test_stub_or_real_commands_never_traceback(tmp_path):
    for c in ["preprocess", "reenact", "train", "eval", "bench"]:
        r = cli(c, "--help")
        assert r.returncode == 0 and "Traceback" not in r.stderr


def test_exit_code_table_is_documented():
    readme = (REPO / "README.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} |" in readme, code


def test_render_sample_runs_every_stage_that_exists(tmp_path, sample_media):
    """README command 1 on a copy of samples/dialogue.yaml: either a valid MP4 or a clean stop
    at a stage that is not built yet (5 model / 6 dependency), never a traceback or partial file."""
    d = tmp_path / "s"
    shutil.copytree(Path(sample_media["image"]).parent, d / "media")
    shutil.copy(REPO / "samples" / "dialogue.yaml", d / "dialogue.yaml")
    r = cli("--no-progress", "render", d / "dialogue.yaml", "--preset", "draft", env={"ECHO_CACHE_DIR": str(tmp_path / "c")})
    out = d / "out" / "dialogue.mp4"
    if r.returncode == 0:
        import av
        with av.open(str(out)) as c:
            v, a = c.streams.video[0], c.streams.audio[0]
            assert (v.codec_context.name, v.codec_context.format.name, a.codec_context.name) == ("h264", "yuv420p", "aac")
            fps = float(v.average_rate)
            assert abs(float(v.duration * v.time_base) - float(a.duration * a.time_base)) <= 1 / fps + 1e-6
    else:
        assert r.returncode in (5, 6), r.stderr
        assert "Traceback" not in r.stderr
        assert [l for l in r.stderr.splitlines() if l.startswith("error: ")], r.stderr
        assert not out.exists()
        assert not (d / "out").exists() or not any((d / "out").iterdir())


def test_preflight_names_the_yaml_line_for_unusable_media(tmp_path, shared_data):
    """Files that exist but cannot serve their role: exit 4, one line, file:line and field."""
    d = tmp_path / "p"
    d.mkdir()
    y = d / "d.yaml"
    y.write_text(f"""version: 1
avatar:
  image: {shared_data / 'audio' / 'RD_Radio31_000.wav'}
  audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}
output: {{path: out/x.mp4}}
""")
    r = cli("render", y, "--dry-run")
    assert_one_line_error(r, 4)
    assert "d.yaml:3" in r.stderr and "avatar.image" in r.stderr and "no picture" in r.stderr
    y.write_text(f"""version: 1
avatar:
  image: {shared_data / 'portraits' / 's0.jpg'}
  audio: {shared_data / 'clips' / 'd0.mp4'}
output: {{path: out/x.mp4}}
""")
    r = cli("render", y, "--dry-run")
    assert_one_line_error(r, 4)
    assert "d.yaml:4" in r.stderr and "avatar.audio" in r.stderr and "no audio stream" in r.stderr
    assert not (d / "out").exists()


def test_errors_found_while_preprocessing_name_the_yaml_field_too(tmp_path, shared_data):
    """"no face found" came with the file alone, where preflight's errors name the YAML line
    and field that gave it."""
    import cv2
    import skimage.data

    d = tmp_path / "p"
    d.mkdir()
    cv2.imwrite(str(d / "cat.png"), cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR))
    y = d / "d.yaml"
    y.write_text(f"version: 1\navatar:\n  image: cat.png\n  audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}\n"
                 "output: {path: out/x.mp4}\n")
    r = cli("render", y)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 4 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "d.yaml:3 (avatar.image:" in errors[0] and "no face" in errors[0], errors


def test_dry_run_validates_real_dialogue_without_writing(tmp_path, shared_data):
    y = REPO / "samples" / "real_dialogue.yaml"
    out = tmp_path / "real.mp4"
    r = cli("--json", "render", y, "--dry-run", "--output", out, "--fps", "30")
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert payload["ok"] and payload["dry_run"] and payload["settings"]["fps"] == 30
    assert payload["output"] == str(out) and not out.exists()
    r = cli("--json", "render", y, "--dry-run", "--output", tmp_path)      # a folder: the dialogue's name in it
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == str(tmp_path / "real_dialogue.mp4")


def test_mixing_both_voices_when_the_user_has_no_sound_is_said(tmp_path, shared_data):
    """d13.mp4 has no audio track: `audio_mix: both` cannot mix a user voice, and says so."""
    avatar = (f"avatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, "
              f"audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}}}\n")
    user = f"user: {{video: {shared_data / 'clips' / 'd13.mp4'}}}\n"
    voiced = (f"user: {{video: {shared_data / 'clips' / 'd3.mp4'}, "
              f"audio: {shared_data / 'audio' / 'RD_Radio36_000.wav'}}}\n")
    for text, warned in ((user, True), (voiced, False)):
        y = tmp_path / "d.yaml"
        y.write_text("version: 1\n" + avatar + text + "output: {path: o.mp4, audio_mix: both}\n")
        r = cli("render", y, "--dry-run")
        assert r.returncode == 0, r.stderr
        assert ("audio_mix is 'both' but the user has no sound" in r.stderr) is warned, r.stderr


def test_a_user_video_shorter_than_the_conversation_is_said(tmp_path, shared_data):
    import imageio_ffmpeg

    short = tmp_path / "short.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-i", shared_data / "clips" / "d3.mp4",
                    "-t", "2", "-an", short], check=True)
    for video, warned in ((short, True), (shared_data / "clips" / "d13.mp4", False)):   # 2 s / 11.7 s for 8 s
        y = tmp_path / "d.yaml"
        y.write_text("version: 1\n"
                     f"avatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, "
                     f"audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}}}\n"
                     f"user: {{video: {video}}}\noutput: {{path: o.mp4, layout: side-by-side}}\n")
        r = cli("render", y, "--dry-run")
        assert r.returncode == 0, r.stderr
        assert ("the user video lasts 2.0 s of the conversation's 8.0 s" in r.stderr) is warned, r.stderr


def test_render_reads_a_folders_dialogue_and_names_what_is_not_one(tmp_path, shared_data):
    """`echo-cli init DIR` makes DIR/dialogue.yaml, so `render DIR` means it; a folder without
    one, or a video given in its place, is named as such (not "not found" / a codec error)."""
    d = tmp_path / "talk"
    d.mkdir()
    (d / "dialogue.yaml").write_text(
        "version: 1\n"
        f"avatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}}}\n"
        "output: {path: out/talk.mp4}\n")
    r = cli("--json", "render", d, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == str(d / "out" / "talk.mp4")
    (tmp_path / "empty").mkdir()
    r = cli("render", tmp_path / "empty")
    assert_one_line_error(r, 3)
    assert "is a folder" in r.stderr and "no dialogue.yaml" in r.stderr
    r = cli("render", shared_data / "clips" / "d3.mp4")
    assert_one_line_error(r, 3)
    assert "not a dialogue file" in r.stderr and "codec" not in r.stderr


def test_no_speech_recognition_when_nothing_would_read_its_words(tmp_path, shared_data):
    """`transcript: {source: none}`, or turns that all carry their text: no Whisper pass (its
    words would be thrown away); a turn without text still gets the recognised words."""
    head = ("version: 1\n"
            f"avatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}}}\n"
            "output: {path: o.mp4}\npreset: draft\n")
    cases = [("transcript: {source: none}\n", False),
             ("turns:\n  - {speaker: avatar, start: 0, end: 4, text: hello there}\n"
              "  - {speaker: avatar, start: 4, end: 8, text: and goodbye}\n", False),
             ("turns:\n  - {speaker: avatar, start: 0, end: 4, text: hello there}\n"
              "  - {speaker: avatar, start: 4, end: 8}\n", True)]
    for i, (extra, transcribed) in enumerate(cases):
        cache = tmp_path / f"cache{i}"
        y = tmp_path / f"d{i}.yaml"
        y.write_text(head + extra)
        r = cli("render", y, env={"ECHO_CACHE_DIR": str(cache)})
        assert r.returncode == 0, r.stderr
        assert bool(list(cache.rglob("transcript/**/*.meta.json"))) is transcribed, (extra, r.stderr)


def test_render_several_dialogues_validates_all_first_and_carries_on_past_a_bad_one(tmp_path, shared_data):
    media = f"avatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}}}\n"
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(f"version: 1\n{media}output: {{path: {name}.mp4}}\npreset: draft\n")
    (tmp_path / "twin.yaml").write_text(f"version: 1\n{media}output: {{path: a.mp4}}\npreset: draft\n")
    (tmp_path / "typo.yaml").write_text(f"version: 1\n{media}output: {{path: t.mp4}}\npreset: drafty\n")
    out = tmp_path / "out"
    out.mkdir()
    r = cli("--json", "render", *(tmp_path / f"{n}.yaml" for n in ("a", "twin", "typo", "b")), "-o", out)
    assert r.returncode == 8, r.stderr
    err = r.stderr
    assert "twin.yaml: writes the same output as" in err and "typo.yaml" in err and "Traceback" not in err
    assert err.index("typo.yaml") < err.index("wrote "), "a bad file was found only after rendering began"
    payload = json.loads(r.stdout)
    assert not payload["ok"] and payload["error"]["exit_code"] == 8
    assert sorted(Path(x["output"]).name for x in payload["renders"]) == ["a.mp4", "b.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4"]
    r = cli("render", tmp_path / "a.yaml", tmp_path / "b.yaml", "-o", tmp_path / "a.yaml")
    assert_one_line_error(r, 2)
    assert "must be a folder" in r.stderr
    # README's `render talks/*.yaml -o out/`: a folder not there yet is made (it was a usage
    # error: "must be an existing folder"); one dialogue with `-o new/` writes into new/ as well
    r = cli("render", tmp_path / "a.yaml", tmp_path / "b.yaml", "--dry-run", "-o", f"{tmp_path / 'new'}/")
    assert r.returncode == 0, r.stderr
    r = cli("--json", "render", tmp_path / "a.yaml", "--dry-run", "-o", f"{tmp_path / 'new2'}/")
    assert r.returncode == 0 and json.loads(r.stdout)["output"] == str(tmp_path / "new2" / "a.mp4"), r.stdout


def test_plain_progress_has_no_escape_codes(capsys):
    from echo_cli.cli import common

    common.set_state(quiet=False, no_progress=False)
    with common.progress(total=10, desc="render") as bar:   # stderr is not a TTY under pytest
        for _ in range(10):
            bar.advance(1)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    assert err.strip().splitlines()[-1].startswith("render: 10/10 (100%)")
    common.set_state(no_progress=True)
    with common.progress(total=3, desc="x") as bar:
        bar.advance(3)
    assert capsys.readouterr().err == ""
    common.set_state(no_progress=False)


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 130)])
def test_signals_during_render_exit_130_and_leave_nothing(tmp_path, sample_media, sig, code):
    """Ctrl-C / SIGTERM while a render runs: exit 130, one error line, no output or temp file."""
    import os
    import signal
    import time

    d = tmp_path / "s"
    shutil.copytree(Path(sample_media["image"]).parent, d / "media")
    shutil.copy(REPO / "samples" / "dialogue.yaml", d / "dialogue.yaml")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "echo_cli", "render", str(d / "dialogue.yaml"),
                              "-o", str(out_dir / "x.mp4")], stdout=subprocess.PIPE, stderr=err, text=True,
                             env=dict(os.environ, ECHO_CACHE_DIR=str(tmp_path / "c")))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p.poll() is None and "preprocess" not in err_path.read_text():
            time.sleep(0.1)
        assert p.poll() is None, err_path.read_text()[-800:]
        time.sleep(0.5)
        p.send_signal(getattr(signal, sig))
        p.communicate(timeout=300)
    text = err_path.read_text()
    assert p.returncode == code, text[-800:]
    # (a library may print its own traceback when the interrupt lands inside its import, as
    # protobuf's C extension does; our own exit is the one-line error below, never a traceback)
    assert "internal error" not in text
    assert text.strip().splitlines()[-1].startswith("error: ") and ("interrupted" in text or "terminated" in text)
    assert list(out_dir.iterdir()) == []


def test_explicit_user_audio_and_turn_text_are_used(tmp_path, shared_data):
    """user.audio, when given, is the user's voice for turns and listening (not the user
    video's own sound); a turn's text is kept as written (not replaced by recognition)."""
    sys.path.insert(0, str(REPO / "tests"))
    import media_factory as mf

    user = mf.face_clip(tmp_path / "user.mp4", 3.0, source="clips/d11.mp4")     # a face with its own speech
    quiet = mf.silent_wav(tmp_path / "quiet.wav", 3.0)
    from echo_cli.media.audio_io import load_audio

    said = load_audio(mf.speech_clip(tmp_path / "said.wav", 1.5))          # the avatar answers after 1.5 s
    speech = mf.write_wav(tmp_path / "speech.wav", np.concatenate([np.zeros(24000, np.float32), said]))
    (tmp_path / "d.yaml").write_text(
        "version: 1\n"
        f"avatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, audio: speech.wav}}\n"
        "user: {video: user.mp4, audio: quiet.wav}\n"
        "output: {path: out.mp4}\npreset: draft\n")
    r = cli("--json", "render", tmp_path / "d.yaml", "--explain", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert [t["speaker"] for t in res["turns"]] == ["avatar"], res["turns"]     # the silent user.audio wins
    assert res["turns"][0]["start"] >= 1.0
    # explicit turns: the text given is the text used
    (tmp_path / "t.yaml").write_text(
        "version: 1\n"
        f"avatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, audio: speech.wav}}\n"
        "turns:\n  - {speaker: avatar, start: 0.0, end: 3.0, text: 'I am so happy today'}\n"
        "output: {path: out2.mp4}\npreset: draft\n")
    r = cli("--json", "render", tmp_path / "t.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["turns"][0]["text"] == "I am so happy today"
    assert speech.exists() and quiet.exists() and user.exists()


def test_quiet_means_quiet_even_when_mediapipe_starts(tmp_path, shared_data):
    """A cold render starts MediaPipe's TFLite interpreters, whose C++ start-up lines go
    straight to fd 2; --quiet promises errors only, and a normal run shows none of them."""
    sys.path.insert(0, str(REPO / "tests"))
    import media_factory as mf

    from echo_cli.log import NATIVE_NOISE

    mf.speech_clip(tmp_path / "speech.wav", 2.0)
    (tmp_path / "d.yaml").write_text(
        f"version: 1\navatar: {{image: {shared_data / 'portraits' / 's1.jpg'}, audio: speech.wav}}\n"
        "output: {path: out.mp4}\npreset: draft\n")
    for flags, cache in ((["-q"], "c1"), ([], "c2")):
        r = cli(*flags, "render", tmp_path / "d.yaml", cwd=tmp_path, env={"ECHO_CACHE_DIR": str(tmp_path / cache)})
        assert r.returncode == 0, r.stderr[-2000:]
        assert not [ln for ln in r.stderr.splitlines() if NATIVE_NOISE.match(ln.encode())], r.stderr[-2000:]
        if flags:
            assert r.stderr.strip() == "", r.stderr[-2000:]
    assert NATIVE_NOISE.match(b"W0000 00:00:1796537171.268454    6999 inference_feedback_manager.cc:114] Feedback")
    assert NATIVE_NOISE.match(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    assert not NATIVE_NOISE.match(b"error: talk.yaml:3: field 'avatar.image': file not found")


def test_doctor_sees_what_would_break_a_render(tmp_path):
    """A cache path that is a file, a checkpoint that is not safetensors, an ffmpeg that is
    not ffmpeg: doctor fails them with the variable named in the fix, and the exit code a
    render would meet (cache 7, checkpoint 5, a dependency 6)."""
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    for env, name, needle, code in (({"ECHO_CACHE_DIR": str(junk)}, "cache folder", "ECHO_CACHE_DIR", 7),
                                    ({"ECHO_CHECKPOINT": str(junk)}, "checkpoint", "ECHO_CHECKPOINT", 5),
                                    ({"ECHO_FFMPEG": shutil.which("false") or "/bin/false"}, "ffmpeg", "ECHO_FFMPEG", 6)):
        r = cli("--json", "doctor", env=env)
        payload = json.loads(r.stdout)
        check = next(c for c in payload["checks"] if c["name"] == name)
        assert r.returncode == code and not check["ok"] and needle in check["fix"], (name, check)
    # and a render with that ffmpeg stops at preflight, exit 6 naming ECHO_FFMPEG (it decoded
    # every input to nothing and blamed the user's media, exit 4)
    y = tmp_path / "d.yaml"
    y.write_text(f"version: 1\navatar:\n  image: {REPO / 'samples' / 'media' / 'avatar.png'}\n"
                 f"  audio: {REPO / 'samples' / 'media' / 'avatar.wav'}\noutput:\n  path: out.mp4\n")
    r = cli("render", y, "--dry-run", env={"ECHO_FFMPEG": shutil.which("true") or "/bin/true"})
    assert_one_line_error(r, 6)
    assert "ECHO_FFMPEG" in r.stderr


def test_symlink_loop_is_a_named_input_error(tmp_path, shared_data):
    """A looping symlink as a portrait: exit 4 naming the link (it was an internal error, exit 1,
    from the output-is-input check resolving the link)."""
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    y = tmp_path / "d.yaml"
    y.write_text(f"version: 1\navatar:\n  image: a.jpg\n  audio: {shared_data / 'audio' / 'RD_Radio31_000.wav'}\n"
                 "output:\n  path: out.mp4\n")
    r = cli("render", y, "--dry-run")
    assert_one_line_error(r, 4)
    assert "a.jpg" in r.stderr and "looping symbolic link" in r.stderr
    r = cli("--quiet", "reenact", tmp_path / "a.jpg", shared_data / "clips" / "d12.mp4", "-o", tmp_path / "o.mp4")
    assert_one_line_error(r, 4)
    assert "looping symbolic link" in r.stderr


@pytest.mark.parametrize("value", ["abc", "-3", "0"])
def test_junk_echo_threads_is_a_usage_error(value, tmp_path, monkeypatch):
    """ECHO_THREADS=abc crashed inside int() or CTranslate2 (internal error, exit 1)."""
    from echo_cli.env import env_threads

    r = cli("render", tmp_path / "none.yaml", env={"ECHO_THREADS": value})
    assert_one_line_error(r, 2)
    assert "ECHO_THREADS" in r.stderr
    r = cli("doctor", env={"ECHO_THREADS": value})
    assert r.returncode != 0 and "ECHO_THREADS" in r.stderr + r.stdout and "Traceback" not in r.stderr
    monkeypatch.setenv("ECHO_THREADS", "3")
    assert env_threads() == 3


@pytest.mark.parametrize("args, needle", [
    (["bench", "batch", "--set", "jobs=abc"], "not an integer"),
    (["bench", "batch", "--set", "seconds=-1"], "out of range"),
    (["bench", "render", "--set", "foo=bar"], "has no option 'foo'"),
    (["bench", "end-to-end", "--set", "cache=hot"], "use one of both, cold, warm"),
    (["bench", "generate", "--set", "threads=0"], "out of range"),
])
def test_bench_set_options_are_checked(args, needle):
    """--set values were parsed inside the targets (internal errors) or silently ignored."""
    r = cli(*args, "--no-doc", "--quick")
    assert_one_line_error(r, 2)
    assert needle in r.stderr


def test_json_bench_names_its_command_like_every_command(tmp_path):
    r = cli("--json", "bench", "generate", "--frames", "16", "--no-doc", "--history", tmp_path / "h.jsonl")
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert payload["ok"] and payload["command"] == "bench" and payload["target"] == "generate"
    assert "bench generate --frames 16" in payload["command_line"]
    history = json.loads((tmp_path / "h.jsonl").read_text().splitlines()[-1])
    assert history["command"] == payload["command_line"]       # the history keeps its format


def test_bench_doc_in_a_missing_folder_is_refused(tmp_path):
    r = cli("bench", "render", "--doc", tmp_path / "no" / "x.md", "--quick", "--frames", "2", "--sizes", "64")
    assert_one_line_error(r, 7)
    assert not (tmp_path / "no").exists()


def test_folders_and_tilde_paths_are_read_as_users_mean_them(tmp_path, monkeypatch):
    """A folder given as a checkpoint or a video to eval says so (it said "not found"); a quoted
    ECHO_CACHE_DIR='~/x' means the home folder (it made ./~/x)."""
    from echo_cli.errors import InputError, ModelError
    from echo_cli.eval.measure import measure_video
    from echo_cli.hashing import cache_root
    from echo_cli.model.checkpoint import load_checkpoint

    with pytest.raises(ModelError, match="folder, not a checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(InputError, match="folder, not a video"):
        measure_video(tmp_path)
    monkeypatch.setenv("ECHO_CACHE_DIR", "~/echo-cache-test")
    assert cache_root() == Path.home() / "echo-cache-test"
