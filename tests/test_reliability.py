"""Reliability and safety: bad inputs and faults over the whole tool (issue 10).

`CASES` is the single list of cases. docs/reliability.md is generated from it
(`python tests/test_reliability.py > docs/reliability.md`) and `test_docs_table_matches`
fails when they differ. Every case is run for real through the CLI in a subprocess (real
ffmpeg, MediaPipe, model), and for a failure the test checks: the documented exit code, one
`error:` line naming the file with a `(fix: ...)`, no traceback, and nothing at the output
path (not even a hidden partial file). For a success it checks the output decodes cleanly.

Cases whose `test` is another module's test (batch faults) are listed here so the table is
complete; `test_every_case_has_an_implementation` keeps the two in step.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import media_factory as mf

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DOC = REPO / "docs" / "reliability.md"


@dataclass(frozen=True)
class Case:
    id: str
    group: str          # input | spec | path | output | model | safety | fault
    what: str           # the bad input or the fault
    does: str           # what the tool does
    code: str           # exit code(s) as documented
    test: str = ""      # implementing test when not the generic `test_render_case[id]`


OK = "0"
CASES: list[Case] = [
    # -- media inputs (echo-cli render on a dialogue.yaml naming the file) -------------------
    Case("missing_file", "input", "avatar image does not exist", "one-line error naming file:line and field", "4"),
    Case("unreadable_file", "input", "avatar image without read permission", "one-line error: cannot read", "4"),
    Case("empty_file", "input", "0-byte avatar image", "one-line error: empty/unreadable media", "4"),
    Case("truncated_mp4", "input", "avatar video cut at 40% of its bytes", "one-line error: corrupt or truncated", "4"),
    Case("corrupt_mp4", "input", "avatar video with its payload overwritten by noise", "one-line error: corrupt", "4"),
    Case("mp4_no_video", "input", "avatar video that has only an audio stream", "one-line error: no picture", "4"),
    Case("audio_no_samples", "input", "avatar audio: WAV header with zero samples", "one-line error: no samples", "4"),
    Case("audio_corrupt", "input", "avatar audio: random bytes named .wav", "one-line error: not decodable", "4"),
    Case("silent_track", "input", "avatar audio is digital silence", "renders a silent (listening) avatar; warns that no speech was found", OK),
    Case("wav_8h_header", "input", "WAV header claiming 8 hours, 1 s of data", "renders the real 1 s; memory follows the data, not the header", OK),
    Case("video_1fps", "input", "user video at 1 fps", "resampled to the output fps; renders", OK),
    Case("video_120fps", "input", "user video at 120 fps", "resampled to the output fps; renders", OK),
    Case("video_vfr", "input", "user video with variable frame rate", "resampled on timestamps; renders", OK),
    Case("user_video_cut_off", "input", "user video whose header declares 3 s while its data stops after about 1 s (index first, payload cut)", "renders, holding its last good frame; warns that the picture stops early", OK),
    Case("video_rotated", "input", "phone video stored sideways with a 90° display rotation (avatar)", "frames read display-oriented; renders", OK),
    Case("non_square_pixels", "input", "avatar video with SAR 15:16 (../shared/data/clips/d9.mp4)", "frames read with square pixels; renders", OK),
    Case("image_8k", "input", "7680×4320 avatar image", "downscaled for detection; renders", OK),
    Case("image_16px", "input", "16×16 avatar image", "one-line error: no face found", "4"),
    Case("image_gray", "input", "grayscale avatar image", "converted to RGB; renders", OK),
    Case("image_cmyk", "input", "CMYK JPEG avatar image", "converted to RGB; renders", OK),
    Case("image_16bit", "input", "16-bit PNG avatar image", "converted to 8-bit RGB; renders", OK),
    Case("image_alpha", "input", "RGBA PNG avatar image with transparent areas", "alpha flattened; renders", OK),
    Case("no_face", "input", "avatar image without a face (scikit-image's cat)", "one-line error: no face found", "4"),
    Case("two_faces", "input", "avatar image with two faces side by side", "picks the largest/most central face (logged); renders", OK),
    Case("face_leaves_frame", "input", "user video whose face slides out of the frame in the last third", "missing frames held/interpolated (logged); renders", OK),
    # -- dialogue.yaml -------------------------------------------------------------------
    Case("yaml_syntax_error", "spec", "dialogue.yaml with broken indentation", "one-line error with file:line", "3"),
    Case("unknown_key", "spec", "dialogue.yaml with a misspelt key", "one-line error naming the key and a close match", "3"),
    Case("wrong_type", "spec", "seed: \"abc\"", "one-line error naming the field", "3"),
    Case("negative_turn_time", "spec", "a turn starting at -1 s", "one-line error naming turns[i].start", "3"),
    Case("overlapping_turns", "spec", "two avatar turns that overlap", "one-line error naming the turns", "3"),
    Case("turn_past_audio_end", "spec", "a turn ending at 60 s with 2 s of audio", "one-line error naming the turn and the audio length", "3"),
    Case("turn_after_audio_end", "spec", "a turn at 2.1–2.4 s with 2 s of audio (inside the 0.5 s rounding slack)", "one-line error naming turns[i].start", "3"),
    Case("duplicate_key", "spec", "dialogue.yaml that sets `seed:` twice", "one-line error at the second line (YAML would keep the last silently)", "3"),
    Case("output_is_input", "spec", "output.path is the avatar's own video", "one-line error before any work; the video is untouched", "3"),
    Case("garbled_transcript", "input", "transcript.path: an .srt without a single timed cue", "one-line error naming the file (also under --dry-run)", "4"),
    # -- paths ---------------------------------------------------------------------------
    Case("path_spaces", "path", "media, dialogue and output paths with spaces", "renders", OK),
    Case("path_unicode", "path", "media, dialogue and output paths in non-ASCII (ünï/日本)", "renders", OK),
    Case("path_leading_dash", "path", "files named -ref.jpg, -talk.yaml, -out.mp4 (passed after --)", "treated as names, never options; renders", OK),
    Case("path_shell_chars", "safety", "an image and output named `; rm -rf ~`", "a file name like any other (argument lists); renders; $HOME untouched", OK),
    # -- output --------------------------------------------------------------------------
    Case("output_parent_is_file", "output", "output folder is a regular file", "one-line error before any model loads", "7"),
    Case("output_dir_readonly", "output", "output folder without write permission", "one-line error before any model loads", "7"),
    Case("output_dir_refuses_writes", "output", "output folder that permissions allow but the filesystem refuses (/proc, as a root-squashed share does)", "one-line error before any preprocessing", "7"),
    Case("disk_full", "output", "file-size limit (RLIMIT_FSIZE 16 KiB) hit while writing", "one-line error: disk full; no partial file", "7"),
    Case("cache_not_writable", "output", "ECHO_CACHE_DIR is a regular file", "one-line error naming the cache folder, before any model loads", "7"),
    # -- checkpoints ---------------------------------------------------------------------
    Case("checkpoint_missing", "model", "checkpoint: a path that does not exist", "one-line error with the fix", "5"),
    Case("checkpoint_truncated", "model", "safetensors file cut to a third", "one-line error: truncated/corrupt checkpoint", "5"),
    Case("checkpoint_mismatched", "model", "valid safetensors whose tensors do not fit the model", "one-line error: does not match the code", "5"),
    Case("checkpoint_pickle", "safety", "a pickle (.pt) checkpoint whose payload creates a file", "refused with an explanation; payload never runs", "5"),
    # -- safety --------------------------------------------------------------------------
    Case("yaml_python_tag", "safety", "dialogue.yaml with !!python/object/apply:os.system", "safe loader: one-line error; nothing runs", "3"),
    Case("manifest_python_tag", "safety", "manifest with a !!python tag", "safe loader: one-line error; nothing runs", "3",
         test="test_manifest_python_tag"),
    Case("manifest_escape", "safety", "manifest rows pointing at ../ and /etc paths", "rows refused with line numbers unless --allow-outside", "3 (8 with --skip-invalid)",
         test="test_manifest_escape"),
    Case("network_off", "safety", "no LLM/MLLM endpoint configured", "no network connection is attempted during a render", OK,
         test="test_network_off_by_default"),
    # -- faults --------------------------------------------------------------------------
    Case("sigint_render", "fault", "SIGINT during render", "stops; nothing at the output path; rerun completes", "130, rerun 0",
         test="test_signal_during_render"),
    Case("sigterm_render", "fault", "SIGTERM during render", "stops; nothing at the output path; rerun completes", "130, rerun 0",
         test="test_signal_during_render"),
    Case("sigkill_render", "fault", "SIGKILL during render", "nothing at the output path; rerun completes", "-9, rerun 0",
         test="test_signal_during_render"),
    Case("sigint_preprocess", "fault", "SIGINT during preprocess", "stops; cache stays consistent; rerun completes", "130, rerun 0",
         test="test_signal_during_preprocess"),
    Case("sigterm_preprocess", "fault", "SIGTERM during preprocess", "stops; cache stays consistent; rerun completes", "130, rerun 0",
         test="test_signal_during_preprocess"),
    Case("sigkill_preprocess", "fault", "SIGKILL during preprocess", "cache stays consistent; rerun completes", "-9, rerun 0",
         test="test_signal_during_preprocess"),
    Case("sigint_batch", "fault", "SIGINT during batch", "stops taking jobs, discards in-flight partial outputs; rerun finishes", "130, rerun 0",
         test="test_batch.py::test_signal_stops_cleanly_and_rerun_finishes"),
    Case("sigterm_batch", "fault", "SIGTERM during batch", "as SIGINT", "130, rerun 0",
         test="test_batch.py::test_signal_stops_cleanly_and_rerun_finishes"),
    Case("sigkill_batch_worker", "fault", "SIGKILL of batch workers at random moments (real renders, 1/3 bad rows)",
         "job retried or failed as crashed; no partial files; rerun completes every good job once", "0 or 8, rerun 8 (bad rows)",
         test="test_batch.py::test_real_mixed_batch_with_sigkills_then_rerun"),
    Case("two_renders_same_output", "fault", "two `echo-cli render` processes writing the same output", "both finish; the file is one whole video (atomic rename)", OK,
         test="test_two_renders_same_output"),
    Case("two_batches_same_manifest", "fault", "two batch runs on one manifest at once", "per-output locks: every job rendered once", OK,
         test="test_batch.py::test_two_batches_on_one_manifest_render_each_job_once"),
    Case("truncated_cache_entry", "fault", "every cache file truncated on disk between two renders", "damaged entries detected and recomputed; same output", OK,
         test="test_truncated_cache_entry"),
    Case("new_user_sweep", "input", "every ../shared/data portrait and clip as the avatar (batch, draft)", "renders or one clear error per file; never a traceback", "0 or 8",
         test="test_new_user_sweep_no_tracebacks"),
    # -- found by the third exploratory pass of 2026-12-06 -------------------------------
    Case("cover_art_audio", "input", "avatar audio: MP3/M4A carrying an album cover (attached picture)", "the cover is ignored; the speech is used", OK,
         test="test_media.py::test_cover_art_in_an_audio_file_is_not_a_video"),
    Case("late_audio", "input", "a video whose sound starts 1 s after its picture", "the first second decodes as silence: sound stays in sync with the picture", OK,
         test="test_media.py::test_late_audio_keeps_its_place_against_the_picture"),
    Case("speech_on_lfe", "input", "3-channel WAV with the speech on its third (LFE) channel", "downmixed with the LFE: the speech is rendered", OK,
         test="test_media.py::test_speech_on_any_channel_survives_the_downmix"),
    Case("tiny_audio", "input", "avatar audio of 16 samples (1 ms)", "one frame with one frame's worth of AAC", OK,
         test="test_audio_count.py::test_a_track_of_a_few_samples_still_gets_an_audio_stream"),
    Case("truncated_image", "input", "avatar image (JPEG/PNG) cut off part-way", "one-line error: truncated or damaged (also under --dry-run)", "4",
         test="test_renderer.py::test_damaged_stills_are_errors_not_green_frames"),
    Case("video_fade_in", "input", "avatar/reference video that fades in from black (no face in frame 0)", "the first frame with a face (within 10 s) is the portrait, with a warning", OK,
         test="test_reenact.py::test_video_reference_that_fades_in_takes_its_first_face"),
    Case("symlink_loop", "path", "avatar image is a looping symlink", "one-line error naming the link", "4",
         test="test_cli.py::test_symlink_loop_is_a_named_input_error"),
    Case("junk_echo_threads", "spec", "ECHO_THREADS=abc, -3 or 0", "one-line usage error naming the variable (also in doctor)", "2",
         test="test_cli.py::test_junk_echo_threads_is_a_usage_error"),
    Case("ffmpeg_not_ffmpeg", "model", "ECHO_FFMPEG=/bin/true", "stops at preflight naming the variable (doctor fails it too)", "6",
         test="test_cli.py::test_doctor_sees_what_would_break_a_render"),
    Case("report_unwritable", "output", "batch report in a folder that cannot be made", "one-line error before any job", "7",
         test="test_batch.py::test_report_may_not_overwrite_the_manifest_or_an_input"),
    Case("eval_suite_bad_video", "input", "`eval --suite` with one unreadable video", "the others are measured and written; the bad one listed", "8",
         test="test_eval_cli.py::test_suite_measures_the_good_videos_when_one_is_bad"),
    Case("signal_after_commit", "fault", "SIGTERM just after the finished video is renamed into place", "the run ends normally", OK,
         test="test_api_cancel.py::test_a_signal_after_the_output_is_in_place_lets_the_render_finish"),
    Case("sigterm_train", "fault", "SIGINT/SIGTERM during `train`", "state of the last completed step saved; --resume ends bitwise as an unbroken run", "130, resume 0",
         test="test_train_stage1.py::test_interrupt_saves_state_and_resume_goes_on"),
    Case("sigkill_preprocess_workers", "fault", "SIGKILL of `preprocess --workers 2`", "its pool workers exit too (no orphans holding memory)", "-9",
         test="test_preprocess_cli.py::test_workers_leave_with_a_killed_parent"),
]


# ======================================================================================
# Docs table (generated from CASES)
# ======================================================================================

def render_table() -> str:
    from echo_cli.errors import EXIT_CODES

    lines = ["# Reliability: bad inputs and faults", "",
             "Generated from `CASES` in tests/test_reliability.py (`python tests/test_reliability.py > docs/reliability.md`);",
             "`test_docs_table_matches` fails when this file and the tests differ. Every case runs in CI through the",
             "real CLI. For every failure the tool prints one `error: <file>: <what> (fix: <how>)` line on stderr,",
             "no traceback, and leaves nothing at the output path.", "",
             f"{len(CASES)} cases.", "",
             "| # | case | group | input or fault | what the tool does | exit code | test |",
             "|---|---|---|---|---|---|---|"]
    for i, c in enumerate(CASES, 1):
        test = c.test or f"test_render_case[{c.id}]"
        lines.append(f"| {i} | `{c.id}` | {c.group} | {c.what} | {c.does} | {c.code} | `{test}` |")
    lines += ["", "## Exit codes", "", "| code | meaning |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in EXIT_CODES.items()]
    lines += ["", "A negative code (-9) is the signal that killed the process, as the shell reports 137.", "",
              "## Safety rules the cases enforce", "",
              "- YAML (dialogue files, manifests, presets) is read with `yaml.safe_load`/`yaml.compose` and the safe loader only.",
              "- Checkpoints load only from safetensors + JSON; a pickle file (.pt, .pth, .ckpt, .bin, .pkl) is refused",
              "  with an explanation and is never unpickled.",
              "- ffmpeg and every other subprocess run with argument lists, never through a shell: a file named",
              "  `; rm -rf ~` is just a file.",
              "- Manifest paths may not leave the manifest's folder (after resolving symlinks) unless `--allow-outside`.",
              "- Optional network endpoints (LLM, MLLM) are off by default and never receive media unless configured.",
              ""]
    return "\n".join(lines)


def test_docs_table_matches():
    assert DOC.is_file(), "docs/reliability.md missing: python tests/test_reliability.py > docs/reliability.md"
    assert DOC.read_text() == render_table(), "docs/reliability.md is stale: regenerate it from CASES"


def test_at_least_forty_distinct_cases():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40


def test_every_case_has_an_implementation():
    for c in CASES:
        if not c.test:
            assert c.id in BUILDERS, f"case {c.id} has no builder"
        elif "::" in c.test:
            mod, fn = c.test.split("::")
            assert f"def {fn}(" in (TESTS / mod).read_text(), c.test
        else:
            assert callable(globals().get(c.test)), c.test
    assert set(BUILDERS) <= {c.id for c in CASES if not c.test}


# ======================================================================================
# Running the CLI
# ======================================================================================

def cli(*args, env=None, cwd=None, timeout=900, preexec=None, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *mf.cli_cmd(*args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd, preexec_fn=preexec)


def unprivileged_prefix() -> list[str]:
    """Root reads every file whatever its mode: drop the capabilities that let it (setpriv)."""
    if os.geteuid() != 0:
        return []
    sp = shutil.which("setpriv")
    assert sp, "running as root needs util-linux setpriv to test permission errors"
    caps = "-dac_override,-dac_read_search"
    return [sp, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def assert_clean_failure(r: subprocess.CompletedProcess, code: int, out: Path | None) -> None:
    err = r.stderr
    assert r.returncode == code, f"exit {r.returncode}, expected {code}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    assert "(fix:" in errors[0], errors[0]
    if out is not None:
        assert not out.exists(), f"something was written at {out}"
        assert hidden_leftovers(out.parent) == [], hidden_leftovers(out.parent)


def assert_rendered(r: subprocess.CompletedProcess, out: Path) -> None:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
    assert mf.valid_video(out), f"{out} is not a whole video"
    assert hidden_leftovers(out.parent) == [], hidden_leftovers(out.parent)


# ======================================================================================
# Shared inputs (module scope: made once)
# ======================================================================================

@dataclass
class Base:
    dir: Path
    portrait: Path
    speech: Path
    srt: Path
    cache: Path

    def env(self) -> dict:
        return {"ECHO_CACHE_DIR": str(self.cache), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    mf.need_shared()
    d = tmp_path_factory.mktemp("rel-base")
    portrait = d / "portrait.jpg"
    mf.portrait("s1.jpg").save(portrait)
    speech = mf.speech_clip(d / "speech.wav", 2.0)
    srt = mf.srt(d / "words.srt", "this is a short test sentence", 2.0)
    cache = d / "cache"
    cache.mkdir()
    return Base(d, portrait, speech, srt, cache)


@dataclass
class Scenario:
    args: list[str]
    out: Path
    prefix: tuple = ()
    env: dict | None = None
    preexec: Callable | None = None
    check: Callable[[subprocess.CompletedProcess], None] | None = None


def _dialogue(tmp: Path, b: Base, name: str = "talk.yaml", output: str = "out/out.mp4", **kw) -> Path:
    kw.setdefault("image", b.portrait if "video" not in kw else None)
    kw.setdefault("audio", b.speech)
    kw.setdefault("transcript", b.srt)
    return mf.dialogue_yaml(tmp / name, output=output, **kw)


def simple(tmp: Path, b: Base, **kw) -> Scenario:
    d = _dialogue(tmp, b, **kw)
    return Scenario(["render", str(d)], tmp / "out" / "out.mp4")


def _says(s: Scenario, needle: str) -> Scenario:
    """The scenario also warns (on stderr) with `needle`."""
    def check(r):
        assert needle in r.stderr, r.stderr
    s.check = check
    return s


def _image(kind):
    def build(tmp, b):
        return simple(tmp, b, image=mf.image_variant(tmp / f"img_{kind}.{'jpg' if kind in ('8k', 'cmyk') else 'png'}", kind))
    return build


def _user_video(maker):
    def build(tmp, b):
        return simple(tmp, b, user_video=maker(tmp))
    return build


def _raw(text: str):
    def build(tmp, b):
        d = tmp / "talk.yaml"
        d.write_text(text.format(img=json.dumps(str(b.portrait)), wav=json.dumps(str(b.speech))))
        return Scenario(["render", str(d)], tmp / "out" / "out.mp4")
    return build


def b_unreadable(tmp, b):
    img = tmp / "locked.jpg"
    shutil.copy(b.portrait, img)
    img.chmod(0)
    (tmp / "out").mkdir()
    s = simple(tmp, b, image=img)
    s.prefix = tuple(unprivileged_prefix())
    return s


def b_empty(tmp, b):
    (tmp / "empty.png").write_bytes(b"")
    return simple(tmp, b, image=tmp / "empty.png")


def b_truncated(tmp, b):
    good = mf.face_clip(tmp / "good.mp4", 2.0)
    return simple(tmp, b, video=mf.truncated(good, tmp / "trunc.mp4"), image=None)


def b_corrupt(tmp, b):
    good = mf.face_clip(tmp / "good.mp4", 2.0)
    return simple(tmp, b, video=mf.corrupted(good, tmp / "corrupt.mp4"), image=None)


def b_no_video(tmp, b):
    return simple(tmp, b, video=mf.audio_only_mp4(tmp / "audio_only.mp4"), image=None)


def b_8h(tmp, b):
    s = simple(tmp, b, audio=mf.eight_hour_header_wav(tmp / "long.wav", 1.0))

    def check(r):
        info = mf.probe(s.out)
        assert 0.5 < info["duration"] < 2.0, info
    s.check = check
    # a reader that trusts the header would need ~5.5 GB: cap the address space at 6 GB total
    s.preexec = lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    return s


def b_rotated(tmp, b):
    return simple(tmp, b, video=mf.rotated_clip(tmp / "rotated.mp4"), image=None, audio=b.speech)


def b_sar(tmp, b):
    return simple(tmp, b, video=mf.face_clip(tmp / "sar.mp4", 2.0, "clips/d9.mp4"), image=None, audio=b.speech)


def b_two_faces(tmp, b):
    return simple(tmp, b, image=mf.image_variant(tmp / "two.png", "two_faces"))


def b_overlap(tmp, b):
    return simple(tmp, b, turns=[("avatar", 0.0, 1.5), ("avatar", 1.0, 2.0)])


def b_negative(tmp, b):
    return simple(tmp, b, turns=[("avatar", -1.0, 1.0)])


def b_past_end(tmp, b):
    return simple(tmp, b, turns=[("avatar", 0.0, 1.0), ("user", 1.0, 60.0)])


def _named(img_name: str, yaml_name: str, out_name: str, dash=False):
    def build(tmp, b):
        folder = tmp / Path(img_name).parent
        folder.mkdir(parents=True, exist_ok=True)
        img = tmp / img_name
        shutil.copy(b.portrait, img)
        wav = tmp / (Path(img_name).parent / "sp eech ü.wav")
        shutil.copy(b.speech, wav)
        d = mf.dialogue_yaml(tmp / yaml_name, image=img, audio=wav, transcript=b.srt, output=out_name)
        out = (tmp / yaml_name).parent / out_name
        args = ["render", "--", d.name] if dash else ["render", str(d)]
        return Scenario(args, out)
    return build


def b_shell(tmp, b):
    home = tmp / "home"
    home.mkdir()
    canary = home / "canary.txt"
    canary.write_text("still here")
    s = _named("; rm -rf ~.jpg", "; rm -rf ~.yaml", "; rm -rf ~.mp4")(tmp, b)
    s.env = {"HOME": str(home)}

    def check(r):
        assert canary.read_text() == "still here"
    s.check = check
    return s


def b_parent_file(tmp, b):
    (tmp / "blocker").write_text("I am a file")
    d = _dialogue(tmp, b, output="blocker/out.mp4")
    return Scenario(["render", str(d)], tmp / "blocker" / "out.mp4")


def b_readonly(tmp, b):
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    d = _dialogue(tmp, b, output="ro/out.mp4")
    return Scenario(["render", str(d)], tmp / "ro" / "out.mp4", prefix=tuple(unprivileged_prefix()))


def b_refuses_writes(tmp, b):
    d = _dialogue(tmp, b, output="/proc/echo-out.mp4")
    s = Scenario(["render", str(d)], Path("/proc/echo-out.mp4"))

    def check(r):
        assert "preprocess" not in r.stderr, r.stderr[-2000:]        # failed before the slow stages
    s.check = check
    return s


def b_disk_full(tmp, b):
    s = simple(tmp, b)
    limit = 16 << 10
    s.preexec = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    s.env = {"ECHO_CACHE_DIR": str(tmp / "cache-small")}   # a fresh cache: the limit hits its writes too
    return s


def b_ckpt(kind):
    def build(tmp, b):
        marker = tmp / "PICKLE_RAN"
        if kind == "missing":
            ck = tmp / "nope.safetensors"
        elif kind == "truncated":
            ck = mf.truncated_checkpoint(tmp / "trunc.safetensors")
        elif kind == "mismatched":
            ck = mf.mismatched_checkpoint(tmp / "other.safetensors")
        else:
            ck = mf.pickle_checkpoint(tmp / "model.pt", marker)
        d = _dialogue(tmp, b, checkpoint=ck) if kind != "missing" else None
        if d is None:
            d = _dialogue(tmp, b)
            args = ["render", str(d), "--checkpoint", str(ck)]
        else:
            args = ["render", str(d)]
        s = Scenario(args, tmp / "out" / "out.mp4")

        def check(r):
            assert not marker.exists(), "the pickle payload ran"
            if kind == "pickle":
                assert "pickle" in r.stderr.lower() or "safetensors" in r.stderr.lower()
        s.check = check
        return s
    return build


def b_python_tag(tmp, b):
    marker = tmp / "PWNED"
    d = _dialogue(tmp, b, raw_extra=f"extra: !!python/object/apply:os.system [\"touch {marker}\"]\n")
    s = Scenario(["render", str(d)], tmp / "out" / "out.mp4")
    s.check = lambda r: (_ for _ in ()).throw(AssertionError("payload ran")) if marker.exists() else None
    return s


def b_output_is_input(tmp, b):
    clip = mf.face_clip(tmp / "avatar.mp4", 2.0)
    before = clip.read_bytes()
    d = _dialogue(tmp, b, video=clip, output=str(clip))
    s = Scenario(["render", str(d)], tmp / "out" / "out.mp4")
    s.check = lambda r: None if clip.read_bytes() == before else (_ for _ in ()).throw(AssertionError("input overwritten"))
    return s


def b_garbled_transcript(tmp, b):
    bad = tmp / "words.srt"
    bad.write_text("these are just words\nwith no timings at all\n")
    return simple(tmp, b, transcript=bad)


def b_cache_file(tmp, b):
    s = simple(tmp, b)
    (tmp / "cache-file").write_text("not a folder")
    s.env = {"ECHO_CACHE_DIR": str(tmp / "cache-file")}
    return s


BUILDERS: dict[str, Callable[[Path, Base], Scenario]] = {
    "missing_file": lambda tmp, b: simple(tmp, b, image=tmp / "nope.jpg"),
    "unreadable_file": b_unreadable,
    "empty_file": b_empty,
    "truncated_mp4": b_truncated,
    "corrupt_mp4": b_corrupt,
    "mp4_no_video": b_no_video,
    "audio_no_samples": lambda tmp, b: simple(tmp, b, audio=mf.empty_wav(tmp / "empty.wav")),
    "audio_corrupt": lambda tmp, b: simple(tmp, b, audio=mf.corrupt_audio(tmp / "noise.wav")),
    "silent_track": lambda tmp, b: _says(simple(tmp, b, audio=mf.silent_wav(tmp / "silence.wav", 2.0)),
                                         "no speech found in the avatar's audio"),
    "wav_8h_header": b_8h,
    "video_1fps": _user_video(lambda tmp: mf.face_clip(tmp / "u1.mp4", 3.0, r=1)),
    "user_video_cut_off": lambda tmp, b: _says(simple(tmp, b, user_video=mf.truncated(
        mf.face_clip(tmp / "whole.mp4", 3.0, extra=("-movflags", "+faststart")), tmp / "cut.mp4", 0.35)),
        "the picture stops at"),
    "video_120fps": _user_video(lambda tmp: mf.face_clip(tmp / "u120.mp4", 2.0, vf="minterpolate=fps=120:mi_mode=dup")),
    "video_vfr": _user_video(lambda tmp: mf.vfr_clip(tmp / "vfr.mp4")),
    "video_rotated": b_rotated,
    "non_square_pixels": b_sar,
    "image_8k": _image("8k"),
    "image_16px": _image("tiny"),
    "image_gray": _image("gray"),
    "image_cmyk": _image("cmyk"),
    "image_16bit": _image("16bit"),
    "image_alpha": _image("alpha"),
    "no_face": _image("cat"),
    "two_faces": b_two_faces,
    "face_leaves_frame": _user_video(lambda tmp: mf.leaving_face_clip(tmp / "leave.mp4")),
    "yaml_syntax_error": _raw("version: 1\navatar:\n  image: {img}\n   audio: {wav}\noutput:\n  path: out/out.mp4\n"),
    "unknown_key": _raw("version: 1\navatar:\n  image: {img}\n  audoi: {wav}\noutput:\n  path: out/out.mp4\n"),
    "wrong_type": _raw("version: 1\navatar:\n  image: {img}\n  audio: {wav}\noutput:\n  path: out/out.mp4\nseed: abc\n"),
    "negative_turn_time": b_negative,
    "overlapping_turns": b_overlap,
    "turn_past_audio_end": b_past_end,
    "turn_after_audio_end": lambda tmp, b: simple(tmp, b, turns=[("avatar", 0.0, 1.0), ("user", 2.1, 2.4)]),
    "duplicate_key": lambda tmp, b: simple(tmp, b, raw_extra="seed: 1\n"),
    "output_is_input": b_output_is_input,
    "garbled_transcript": b_garbled_transcript,
    "path_spaces": _named("my media/port rait.jpg", "my media/my talk.yaml", "my out/out put.mp4"),
    "path_unicode": _named("ünïcødé/日本 portrait.jpg", "ünïcødé/対話.yaml", "出力/vidéo.mp4"),
    "path_leading_dash": _named("-media/-ref.jpg", "-talk.yaml", "-out.mp4", dash=True),
    "path_shell_chars": b_shell,
    "output_parent_is_file": b_parent_file,
    "output_dir_readonly": b_readonly,
    "output_dir_refuses_writes": b_refuses_writes,
    "disk_full": b_disk_full,
    "cache_not_writable": b_cache_file,
    "checkpoint_missing": b_ckpt("missing"),
    "checkpoint_truncated": b_ckpt("truncated"),
    "checkpoint_mismatched": b_ckpt("mismatched"),
    "checkpoint_pickle": b_ckpt("pickle"),
    "yaml_python_tag": b_python_tag,
}
GENERIC = [c for c in CASES if not c.test]


@pytest.mark.parametrize("case", GENERIC, ids=[c.id for c in GENERIC])
def test_render_case(case: Case, base: Base, tmp_path):
    s = BUILDERS[case.id](tmp_path, base)
    env = {**base.env(), **(s.env or {})}
    r = cli(*s.args, env=env, cwd=str(tmp_path), preexec=s.preexec, prefix=s.prefix)
    code = int(case.code.split()[0])
    if code == 0:
        assert_rendered(r, s.out)
    else:
        assert_clean_failure(r, code, s.out)
    if s.check:
        s.check(r)


# ======================================================================================
# Safety cases with their own tests
# ======================================================================================

def test_manifest_python_tag(tmp_path):
    marker = tmp_path / "PWNED"
    m = tmp_path / "m.yaml"
    m.write_text(f"- reference: !!python/object/apply:os.system [\"touch {marker}\"]\n  audio: a.wav\n")
    r = cli("batch", str(m), "--check")
    assert_clean_failure(r, 3, None)
    assert not marker.exists()


def test_manifest_escape(tmp_path, base):
    (tmp_path / "in").mkdir()
    shutil.copy(base.speech, tmp_path / "in" / "a.wav")
    m = tmp_path / "m.jsonl"
    shutil.copy(base.portrait, tmp_path.parent / f"{tmp_path.name}_outside.jpg")
    m.write_text(json.dumps({"reference": f"../{tmp_path.name}_outside.jpg", "audio": "in/a.wav", "output": "o/a.mp4"}) + "\n"
                 + json.dumps({"reference": str(base.portrait), "audio": "in/a.wav", "output": "o/b.mp4"}) + "\n"
                 + json.dumps({"reference": "in/a.wav", "audio": "in/a.wav", "output": "/tmp/escape.mp4"}) + "\n")
    r = cli("batch", str(m))
    assert_clean_failure(r, 3, None)
    assert "line 1" in r.stderr and "line 2" in r.stderr and "line 3" in r.stderr and "--allow-outside" in r.stderr
    assert not (tmp_path / "o").exists()                  # nothing ran
    r = cli("batch", str(m), "--check", "--allow-outside")
    assert r.returncode == 0, r.stderr


def test_network_off_by_default(tmp_path, base):
    """A render with no endpoint configured opens no network socket (checked with an audit hook)."""
    d = _dialogue(tmp_path, base)
    hook = tmp_path / "sitecustomize.py"
    hook.write_text(
        "import sys\n"
        "def _audit(event, args):\n"
        "    if event == 'socket.connect':\n"
        "        addr = args[1]\n"
        "        if isinstance(addr, tuple) and addr and addr[0] not in ('127.0.0.1', '::1', 'localhost'):\n"
        "            open(%r, 'a').write(repr(addr) + '\\n')\n"
        "sys.addaudithook(_audit)\n" % str(tmp_path / "connections.log"))
    # no HF_HUB_OFFLINE here: the tool itself must not reach out, whatever the environment says
    env = {"ECHO_CACHE_DIR": str(base.cache), "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run(mf.cli_cmd("render", str(d)), capture_output=True, text=True, timeout=900, cwd=str(tmp_path),
                       env={**{k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}, **env})
    assert_rendered(r, tmp_path / "out" / "out.mp4")
    assert not (tmp_path / "connections.log").exists(), (tmp_path / "connections.log").read_text()


# ======================================================================================
# Faults
# ======================================================================================

def _spawn(args, env, cwd) -> subprocess.Popen:
    return subprocess.Popen(mf.cli_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env}, cwd=cwd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["int", "term", "kill"])
def test_signal_during_render(sig, base, tmp_path):
    d = _dialogue(tmp_path, base, audio=mf.speech_clip(tmp_path / "long.wav", 7.0))
    out = tmp_path / "out" / "out.mp4"
    out.parent.mkdir()              # the render keeps its intermediates beside the output
    env = {**base.env(), "ECHO_CACHE_DIR": str(tmp_path / "cache")}
    p = _spawn(["render", str(d)], env, str(tmp_path))
    try:
        # land the signal mid-render: as soon as the encoder has started writing beside the output
        mf.wait_for(lambda: p.poll() is not None or any(out.parent.iterdir()), 600, 0.02)
        time.sleep(0.3)
        if p.poll() is None:
            p.send_signal(sig)
        out_s, err = p.communicate(timeout=300)
    finally:
        p.kill()
    if p.returncode == 0:
        pytest.fail(f"render finished before the signal landed; make the input longer\n{err[-2000:]}")
    assert p.returncode == (-9 if sig == signal.SIGKILL else 130), err[-3000:]
    assert not out.exists()
    if sig != signal.SIGKILL:
        assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert hidden_leftovers(out.parent) == [] and list(out.parent.iterdir()) == []
    r = cli("render", str(d), env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert mf.valid_video(out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["int", "term", "kill"])
def test_signal_during_preprocess(sig, tmp_path):
    data = mf.need_shared()
    src = tmp_path / "media"
    src.mkdir()
    for name in ("d12.mp4", "d20.mp4"):
        os.symlink(data / "clips" / name, src / name)
    out = tmp_path / "pre"
    env = {"ECHO_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    p = _spawn(["preprocess", str(src), "-o", str(out), "--transcript", "none"], env, str(tmp_path))
    cache = tmp_path / "cache"
    try:
        # signal once the first result is in the cache: the other clips are in flight
        mf.wait_for(lambda: p.poll() is not None or (cache.is_dir() and any(x.is_file() for x in cache.rglob("*"))),
                    600, 0.05)
        if p.poll() is None:
            p.send_signal(sig)
        _, err = p.communicate(timeout=300)
    finally:
        p.kill()
    if p.returncode == 0:
        pytest.fail("preprocess finished before the signal landed")
    assert p.returncode == (-9 if sig == signal.SIGKILL else 130), err[-3000:]
    if sig != signal.SIGKILL:
        assert "Traceback" not in err
    r = cli("--json", "preprocess", str(src), "-o", str(out), "--transcript", "none", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    # a third run hits the cache for everything: the interrupted run left no damaged entry
    r2 = cli("--json", "preprocess", str(src), "-o", str(out), "--transcript", "none", env=env)
    assert r2.returncode == 0
    summary = json.loads(r2.stdout.strip().splitlines()[-1])
    assert "failed" not in summary or not summary["failed"], summary


def test_two_renders_same_output(base, tmp_path):
    d = _dialogue(tmp_path, base)
    env = base.env()
    a = _spawn(["render", str(d)], env, str(tmp_path))
    b = _spawn(["render", str(d)], env, str(tmp_path))
    ra, rb = a.communicate(timeout=900), b.communicate(timeout=900)
    assert a.returncode == 0 and b.returncode == 0, (ra[1][-2000:], rb[1][-2000:])
    out = tmp_path / "out" / "out.mp4"
    assert mf.valid_video(out)
    assert hidden_leftovers(out.parent) == []


def test_truncated_cache_entry(base, tmp_path):
    d = _dialogue(tmp_path, base)
    cache = tmp_path / "cache"
    env = {**base.env(), "ECHO_CACHE_DIR": str(cache)}
    r = cli("render", str(d), env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    first = mf.probe(tmp_path / "out" / "out.mp4")
    entries = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert entries, "the render wrote no cache entries"
    for p in entries:                                   # damage every entry on disk
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    (tmp_path / "out" / "out.mp4").unlink()
    r = cli("render", str(d), env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert mf.valid_video(tmp_path / "out" / "out.mp4")
    assert abs(mf.probe(tmp_path / "out" / "out.mp4")["duration"] - first["duration"]) < 0.1
    # the damaged entries were replaced by whole ones: a third render reads them fine
    r = cli("render", str(d), env=env, cwd=str(tmp_path))
    assert r.returncode == 0


@pytest.mark.slow
def test_new_user_sweep_no_tracebacks(base, tmp_path):
    """Every portrait and clip of ../shared/data as the avatar, as a new user would try them:
    each renders or fails with one clear error in the report; nothing crashes."""
    data = mf.need_shared()
    refs = sorted((data / "portraits").iterdir()) + sorted((data / "clips").iterdir())
    rows = [{"id": f"{p.parent.name}_{p.stem}", "reference": str(p), "audio": str(base.speech),
             "output": f"out/{p.parent.name}_{p.stem}.mp4", "preset": "draft", "size": 128} for p in refs]
    m = tmp_path / "sweep.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = cli("batch", str(m), "--allow-outside", "--workers", "2", "--retries", "0", env=base.env(), timeout=3000)
    assert r.returncode in (0, 8), r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    recs = [json.loads(x) for x in (tmp_path / "sweep.report.jsonl").read_text().splitlines()]
    jobs = [x for x in recs if x["type"] == "job"]
    assert len(jobs) == len(rows)
    for x in jobs:
        if x["status"] == "failed":
            assert x["error"]["kind"] != "internal", x       # a bug, not a clear error
            assert x["error"]["message"] and x["error"].get("fix"), x
        else:
            assert x["status"] == "done" and mf.valid_video(Path(x["output"]))
    done = sum(x["status"] == "done" for x in jobs)
    assert done >= len(list((data / "portraits").iterdir())) // 2     # most portraits are usable


if __name__ == "__main__":
    sys.stdout.write(render_table())


def test_os_errors_with_a_clear_cause_become_typed_errors(tmp_path, monkeypatch):
    """Deep inside a stage (the audio mix, a cache write) a full disk or an unwritable cache
    arrives as a bare OSError; the CLI and the batch report turn those into exit 7 with a fix,
    and leave everything else an internal error (a bug)."""
    import errno

    from echo_cli.batch.jobs import error_dict
    from echo_cli.errors import OutputError, from_os_error

    monkeypatch.setenv("ECHO_CACHE_DIR", str(tmp_path / "cache"))
    full = from_os_error(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(full, OutputError) and full.exit_code == 7 and "disk full" in full.message
    ro = from_os_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cache" / "preprocess")))
    assert isinstance(ro, OutputError) and "ECHO_CACHE_DIR" in ro.fix and ro.path == str(tmp_path / "cache")
    assert from_os_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path))) is not None  # its parent
    assert from_os_error(PermissionError(errno.EACCES, "Permission denied", "/etc/shadow")) is None
    assert from_os_error(OSError(errno.EIO, "I/O error")) is None
    d = error_dict(OSError(errno.ENOSPC, "No space left on device"))
    assert d["kind"] == "output" and d["exit_code"] == 7 and not d["transient"]
