"""dialogue.yaml schema: a valid spec loads; every kind of invalid one is a one-line error
naming file:line, the field, and a fix."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from echo_cli.dialogue import DialogueSpec, load_dialogue
from echo_cli.errors import InputError, SpecError

VALID = """\
version: 1
avatar:
  image: media/a.png
  audio: media/a.wav
user:
  video: media/u.mp4
  audio: media/u.wav
turns:
  - {speaker: avatar, start: 0.0, end: 2.0, text: "Hello there", emotion: happy}
  - {speaker: user, start: 2.0, end: 4.5}
  - {speaker: avatar, start: 4.5, end: 6.0}
transcript:
  source: faster-whisper
output:
  path: out/talk.mp4
  fps: 30
  size: 384
  audio_mix: both
  layout: side-by-side
preset: draft
seed: 3
settings:
  steps: 3
"""


@pytest.fixture
def folder(tmp_path) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    for name in ("a.png", "a.wav", "u.mp4", "u.wav"):
        (media / name).write_bytes(b"x")       # the loader checks existence; probing is preflight's job
    return tmp_path


def write(folder: Path, text: str, name: str = "d.yaml") -> Path:
    p = folder / name
    p.write_text(textwrap.dedent(text))
    return p


def test_valid_spec_resolves_paths_relative_to_yaml(folder):
    spec = load_dialogue(write(folder, VALID))
    assert isinstance(spec, DialogueSpec)
    assert spec.avatar.image == folder / "media" / "a.png"
    assert spec.user.video == folder / "media" / "u.mp4"
    assert spec.output.path == folder / "out" / "talk.mp4"
    assert [t.speaker for t in spec.turns] == ["avatar", "user", "avatar"]
    assert spec.turns[0].emotion == "happy" and spec.turns[1].text is None
    assert spec.setting_overrides() == {"steps": 3, "fps": 30.0, "size": 384}
    assert not (folder / "out").exists()      # loading writes nothing


def test_minimal_spec_defaults(folder):
    spec = load_dialogue(write(folder, """\
        version: 1
        avatar: {image: media/a.png, audio: media/a.wav}
        output: {path: o.mp4}
        """))
    assert spec.turns is None and spec.user is None
    assert (spec.preset, spec.seed, spec.transcript.source) == ("default", 0, "auto")
    assert (spec.output.audio_mix, spec.output.layout) == ("avatar", "avatar")


def one_line_error(path: Path, exc=SpecError):
    with pytest.raises(exc) as ei:
        load_dialogue(path)
    line = ei.value.one_line()
    assert "\n" not in line
    return ei.value, line


@pytest.mark.parametrize("old,new,line_no,field,fix", [
    ("  image: media/a.png", "  imgae: media/a.png", 3, "avatar.imgae", "did you mean 'image'"),     # typo
    ("  fps: 30", "  fps: 30\n  colour: red", 17, "output.colour", "known keys"),                   # unknown key
    ("version: 1", "version: 2", 1, "version", "version: 1"),                                        # version
    ("  layout: side-by-side", "  layout: side-by-sid", 19, "output.layout", "did you mean 'side-by-side'"),
    ("  fps: 30", "  fps: -5", 16, "output.fps", "correct the value"),                               # range
    ("seed: 3", "seed: three", 21, "seed", ""),                                                      # type
    ("{speaker: user, start: 2.0, end: 4.5}", "{speaker: usr, start: 2.0, end: 4.5}", 10, "turns.1.speaker", "did you mean 'user'"),
    ("{speaker: user, start: 2.0, end: 4.5}", "{speaker: user, start: 2.0, end: 1.5}", 10, "turns.1", "correct"),
    ("{speaker: avatar, start: 4.5, end: 6.0}", "{speaker: avatar, start: 1.0, end: 6.0}", 11, "turns.2", ""),  # overlap
    ("  path: out/talk.mp4", "  path: out/talk.avi", 15, "output.path", ""),
    ("  source: faster-whisper", "  source: file", 12, "transcript", "correct"),                    # file needs path
])
def test_invalid_specs_name_file_line_field(folder, old, new, line_no, field, fix):
    assert old in VALID
    p = write(folder, VALID.replace(old, new))
    err, line = one_line_error(p)
    assert err.exit_code == 3
    assert f"{p}:{line_no}:" in line, line
    assert f"'{field}" in line, line
    assert fix in line and "(fix: " in line


def test_missing_required_fields(folder):
    p = write(folder, "version: 1\navatar:\n  image: media/a.png\n  audio: media/a.wav\n")
    err, line = one_line_error(p)
    assert "'output'" in line and "required" in line and f"{p}:1" in line
    p = write(folder, "avatar: {image: media/a.png, audio: media/a.wav}\noutput: {path: o.mp4}\n")
    err, line = one_line_error(p)
    assert "'version'" in line and "version: 1" in line or "`version:`" in line


def test_avatar_needs_exactly_one_reference_and_audio_with_image(folder):
    p = write(folder, "version: 1\navatar: {image: media/a.png, video: media/u.mp4, audio: media/a.wav}\noutput: {path: o.mp4}\n")
    assert "exactly one" in one_line_error(p)[1]
    p = write(folder, "version: 1\navatar:\n  image: media/a.png\noutput: {path: o.mp4}\n")
    _, line = one_line_error(p)
    assert "audio" in line and f"{p}:2" in line


def test_layout_and_mix_need_a_user(folder):
    base = "version: 1\navatar: {image: media/a.png, audio: media/a.wav}\n"
    p = write(folder, base + "output: {path: o.mp4, layout: side-by-side}\n")
    _, line = one_line_error(p)
    assert "user.video" in line and "'output.layout'" in line and f"{p}:3:" in line
    p = write(folder, base + "output: {path: o.mp4, audio_mix: both}\n")
    assert "needs a user" in one_line_error(p)[1]


def test_missing_media_file_names_line_and_field(folder):
    p = write(folder, VALID.replace("media/u.wav", "media/nope.wav"))
    err, line = one_line_error(p, InputError)
    assert err.exit_code == 4
    assert f"{p}:7:" in line and "'user.audio'" in line and "nope.wav" in line


def test_yaml_syntax_error_and_non_mapping(folder):
    p = write(folder, "version: 1\navatar: [\n  image: a\n")
    _, line = one_line_error(p)
    assert "not valid YAML" in line and f"{p}:" in line
    p = write(folder, "- just\n- a list\n")
    assert "mapping" in one_line_error(p)[1]
    err, line = one_line_error(folder / "absent.yaml")
    assert "not found" in line


def test_no_python_objects_from_yaml(folder):
    """safe_load only: a python tag is rejected, never executed."""
    p = write(folder, VALID.replace("seed: 3", "seed: !!python/object/apply:os.getcwd []"))
    _, line = one_line_error(p)
    assert "not valid YAML" in line


def test_absolute_paths_kept(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    (other / "x.wav").write_bytes(b"x")
    p = write(folder, VALID.replace("media/a.wav", str(other / "x.wav")))
    assert load_dialogue(p).avatar.audio == other / "x.wav"


def test_a_key_set_twice_is_an_error_at_its_second_line(folder):
    """PyYAML keeps the last of two equal keys; a pasted second `audio:` would silently
    render the avatar with the wrong file."""
    p = write(folder, VALID.replace("  audio: media/a.wav", "  audio: media/a.wav\n  audio: media/u.wav"))
    err, line = one_line_error(p)
    assert err.exit_code == 3
    assert f"{p}:5:" in line and "'avatar.audio'" in line and "set twice" in line and "line 4" in line
    p = write(folder, VALID.replace("seed: 3", "seed: 3\nseed: 4"))
    assert f"{p}:22:" in one_line_error(p)[1]
    # the same key in two different mappings is fine
    assert load_dialogue(write(folder, VALID)).user.audio.name == "u.wav"


def test_nested_yaml_aliases_are_checked_once(folder):
    """Ten lines of nested aliases (9 levels of 9) are 9^9 nodes when each alias is walked
    again: the duplicate-key check took minutes on them (a hang from a small file). PyYAML
    itself shares the aliased objects; so does the check now. The subprocess limit is a
    hang guard, hundreds of times the second the check takes."""
    import subprocess
    import sys

    lines = VALID.rstrip("\n").split("\n")
    bomb = ["x_anchors:", '  - &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, n in zip("abcdefgh", "bcdefghi"):
        bomb.append(f"  - &{n} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = write(folder, "\n".join(bomb + lines) + "\n")
    r = subprocess.run([sys.executable, "-c", "import sys\nfrom echo_cli.dialogue import load_dialogue\n"
                        "from echo_cli.errors import SpecError\ntry:\n    load_dialogue(sys.argv[1])\n"
                        "except SpecError as e:\n    print(e.one_line())", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert "'x_anchors': unknown key" in r.stdout, r.stdout + r.stderr


def test_a_transcript_path_is_read_or_refused_never_ignored(folder):
    """`transcript: {path: w.srt}` reads the file; a path beside another source was checked
    as a file and then never read (the words came from speech recognition)."""
    (folder / "w.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    base = VALID.replace("transcript:\n  source: faster-whisper", "transcript:\n  path: w.srt")
    spec = load_dialogue(write(folder, base))
    assert spec.transcript.source == "file" and spec.transcript.path.name == "w.srt"
    p = write(folder, base.replace("  path: w.srt", "  source: auto\n  path: w.srt"))
    err, line = one_line_error(p)
    assert err.exit_code == 3 and "only read with source `file`" in line


def test_a_setting_in_output_and_settings_both_is_an_error(folder):
    """output.fps and settings.fps are the same level of the precedence chain: one was
    dropped without a word."""
    p = write(folder, VALID.replace("settings:\n  steps: 3", "settings:\n  steps: 3\n  fps: 24"))
    err, line = one_line_error(p)
    assert err.exit_code == 3 and "settings.fps" in line and "output.fps" in line


@pytest.mark.parametrize("old,new,field,needle", [
    ("version: 1", "version: '1'", "version", "no quotes"),     # read "unsupported version '1' ... reads 1"
    ("version: 1", "version: true", "version", "no quotes"),    # True == 1 was accepted
    ("seed: 3", "seed: true", "seed", "valid integer"),         # was seed 1
    ("fps: 30", "fps: .nan", "output.fps", "finite"),           # read "should be <= 120"
    ("steps: 3", "steps: 3\n  cfg_user: .inf", "settings.cfg_user", "finite"),
    ("seed: 3", "seed: 3\ncheckpoint: 5", "checkpoint", "expected a file path"),   # read "not a valid path for <class 'pathlib.Path'>"
])
def test_values_that_only_look_valid(folder, old, new, field, needle):
    err, line = one_line_error(write(folder, VALID.replace(old, new)))
    assert err.exit_code == 3 and f"'{field}'" in line and needle in line, line


def test_yaml_nested_too_deeply_is_a_spec_error(folder):
    p = write(folder, "version: 1\nx: " + "[" * 50_000 + "]" * 50_000 + "\n")
    err, line = one_line_error(p)           # PyYAML composes recursively: was an internal error
    assert err.exit_code == 3 and "nested too deeply" in line


@pytest.mark.parametrize("out", ["media/u.mp4", "out/../media/u.mp4", "link.mp4"])
def test_output_that_is_an_input_is_refused(folder, out):
    """Writing the video over one of its own inputs would destroy the user's media."""
    (folder / "link.mp4").symlink_to(folder / "media" / "u.mp4")
    before = (folder / "media" / "u.mp4").read_bytes()
    err, line = one_line_error(write(folder, VALID.replace("  path: out/talk.mp4", f"  path: {out}")))
    assert err.exit_code == 3 and ":15:" in line and "'output.path'" in line
    assert "user.video" in line and "overwrite" in line
    assert (folder / "media" / "u.mp4").read_bytes() == before


def test_settings_bounds_are_checked_at_their_line(folder):
    p = write(folder, VALID.replace("  steps: 3", "  steps: 0"))
    err, line = one_line_error(p)
    assert err.exit_code == 3 and f"{p}:23:" in line and "'settings.steps'" in line


def test_cross_field_setting_from_the_file_names_its_line(folder):
    """overlap < chunk_frames is checked once the preset is merged: still a spec error at the
    dialogue's line when the dialogue set it, a usage error when a flag did."""
    from echo_cli.config import resolve_settings
    from echo_cli.errors import UsageError

    p = write(folder, VALID.replace("  steps: 3", "  overlap: 64"))
    spec = load_dialogue(p)
    with pytest.raises(SpecError) as ei:
        resolve_settings(spec.preset, dialogue=spec.setting_overrides(), dialogue_path=spec.source_path)
    assert ei.value.exit_code == 3 and ei.value.path.endswith("d.yaml:23") and "'settings.overlap'" in ei.value.message
    with pytest.raises(UsageError) as ei:
        resolve_settings("draft", cli={"overlap": 500})
    assert "'overlap'" in ei.value.message


def test_seed_out_of_range(folder):
    from echo_cli.config import SEED_MAX

    p = write(folder, VALID.replace("seed: 3", f"seed: {SEED_MAX + 1}"))
    assert "'seed'" in one_line_error(p)[1]
    assert load_dialogue(write(folder, VALID.replace("seed: 3", f"seed: {SEED_MAX}"))).seed == SEED_MAX


def test_a_folder_named_as_media_says_so(folder):
    (folder / "media" / "dir.wav").mkdir()
    err, line = one_line_error(write(folder, VALID.replace("media/u.wav", "media/dir.wav")), InputError)
    assert "is a folder" in line
