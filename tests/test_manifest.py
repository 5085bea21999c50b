"""Manifests (YAML, CSV, JSON Lines): validation with line numbers, path rules, and property
tests of the manifest and dialogue parsers: any input gives a valid spec or a clear typed
error (SpecError / InputError), never another exception."""
from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from echo_cli.batch.manifest import load_manifest, parse_manifest_text
from echo_cli.dialogue import DialogueSpec, load_dialogue
from echo_cli.errors import InputError, SpecError


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.png").write_bytes(b"png")
    (tmp_path / "media" / "a.wav").write_bytes(b"wav")
    (tmp_path / "media" / "u.mp4").write_bytes(b"mp4")
    return tmp_path


# ---------------------------------------------------------------------------------------
# The three formats
# ---------------------------------------------------------------------------------------

def test_the_docs_yaml_example_with_a_dialogue_row_beside_inline_defaults(folder):
    """docs/batch.md's example: `defaults: {audio: ...}` was applied to its dialogue row too,
    which then had 'dialogue and inline inputs' and was invalid."""
    (folder / "d.yaml").write_text("version: 1\navatar:\n  image: media/a.png\n  audio: media/a.wav\n"
                                   "output:\n  path: out/talk.mp4\n")
    (folder / "m.yaml").write_text("version: 1\ndefaults: {preset: draft, audio: media/a.wav}\njobs:\n"
                                   "  - {reference: media/a.png, output: out/ann.mp4}\n  - {dialogue: d.yaml}\n")
    m = load_manifest(folder / "m.yaml")
    assert m.invalid == [] and [j.id for j in m.jobs] == ["ann", "d"]
    assert m.jobs[1].preset == "draft" and m.jobs[1].inputs == {}


def test_yaml_list_and_mapping_with_defaults(folder):
    (folder / "m.yaml").write_text(
        "version: 1\n"
        "defaults:\n  preset: draft\n  audio: media/a.wav\n"
        "jobs:\n"
        "  - reference: media/a.png\n    output: out/one.mp4\n"
        "  - reference: media/a.png\n    output: out/two.mp4\n    fps: 30\n    seed: 4\n")
    m = load_manifest(folder / "m.yaml")
    assert m.invalid == [] and [j.id for j in m.jobs] == ["one", "two"]
    one, two = m.jobs
    assert one.preset == "draft" and one.inputs["audio"] == (folder / "media" / "a.wav").resolve()
    assert two.overrides == {"fps": 30} and two.seed == 4 and (one.line, two.line) == (6, 8)
    assert one.output == (folder / "out" / "one.mp4").resolve()


def test_inline_rows_name_their_transcript(folder):
    """`transcript:` of an inline row: a source name (part of the job's settings) or a words
    file (an input: its content is part of the job's hash); not beside a dialogue."""
    (folder / "media" / "w.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    (folder / "d.yaml").write_text("x")
    (folder / "m.csv").write_text(
        "id,reference,audio,transcript,dialogue\n"
        "a,media/a.png,media/a.wav,none,\n"
        "b,media/a.png,media/a.wav,media/w.srt,\n"
        "c,media/a.png,media/a.wav,,\n"
        "d,media/a.png,media/a.wav,words.txt,\n"
        "e,,,none,d.yaml\n")
    m = load_manifest(folder / "m.csv", check_files=False)
    a, b, c = m.jobs
    assert a.transcript == "none" and a.settings_dict()["transcript"] == "none"
    assert b.transcript is None and b.inputs["transcript"] == (folder / "media" / "w.srt").resolve()
    assert c.transcript is None and "transcript" not in c.settings_dict() and "transcript" not in c.inputs
    lines = {p.line: p.message for p in m.invalid}
    assert set(lines) == {5, 6} and "words.txt" in lines[5] and "inline rows" in lines[6]


def test_a_dialogue_row_may_name_a_folder_holding_dialogue_yaml(folder):
    (folder / "talk").mkdir()
    (folder / "talk" / "dialogue.yaml").write_text("x")
    (folder / "empty").mkdir()
    (folder / "m.jsonl").write_text('{"dialogue": "talk", "output": "o/a.mp4"}\n{"dialogue": "empty", "output": "o/b.mp4"}\n')
    m = load_manifest(folder / "m.jsonl", check_files=False)
    assert [j.dialogue for j in m.jobs] == [(folder / "talk" / "dialogue.yaml").resolve(), (folder / "empty").resolve()]
    m = load_manifest(folder / "m.jsonl")           # with files checked: the empty folder is a bad row
    assert "is a folder" in m.invalid[-1].message and m.invalid[-1].line == 2


def test_csv_with_settings_columns_and_line_numbers(folder):
    (folder / "m.csv").write_text(
        "id,reference,audio,user_video,output,preset,fps,steps\n"
        "a,media/a.png,media/a.wav,,out/a.mp4,draft,25,2\n"
        "\n"
        "b,media/a.png,media/missing.wav,,out/b.mp4,,,\n"
        "c,media/a.png,media/a.wav,media/u.mp4,out/c.mp4,quality,500,\n")
    m = load_manifest(folder / "m.csv")
    assert [j.id for j in m.jobs] == ["a"]
    assert m.jobs[0].overrides == {"fps": 25, "steps": 2}
    lines = {p.line: p.message for p in m.invalid}
    assert set(lines) == {4, 5}
    assert "missing.wav" in lines[4] and "fps" in lines[5]


def test_jsonl_reports_bad_json_lines(folder):
    (folder / "m.jsonl").write_text(
        '{"reference": "media/a.png", "audio": "media/a.wav", "output": "o/1.mp4"}\n'
        '# a comment\n'
        '{"reference": "media/a.png", "audio": \n'
        '[1, 2]\n'
        '{"reference": "media/a.png", "audio": "media/a.wav", "colour": "red"}\n')
    m = load_manifest(folder / "m.jsonl")
    assert len(m.jobs) == 1
    msgs = {p.line: p.message for p in m.invalid}
    assert set(msgs) == {3, 4, 5}
    assert "JSON" in msgs[3] and "mapping" in msgs[4] and "colour" in msgs[5]
    with pytest.raises(SpecError) as e:
        m.raise_if_invalid()
    assert "line 3" in e.value.one_line() and "--skip-invalid" in e.value.one_line()
    assert "\n" not in e.value.one_line()


def test_default_output_and_unique_outputs(folder):
    rows = [{"reference": "media/a.png", "audio": "media/a.wav", "id": "x"},
            {"reference": "media/a.png", "audio": "media/a.wav", "id": "x"},
            {"reference": "media/a.png", "audio": "media/a.wav", "output": "renders/x.mp4", "id": "y"}]
    (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = load_manifest(folder / "m.jsonl")
    assert m.jobs[0].output == (folder / "renders" / "x.mp4").resolve()
    assert [p.line for p in m.invalid] == [2, 3]
    assert all("line 1" in p.message for p in m.invalid)


def test_dialogue_rows_take_the_dialogues_output(folder):
    (folder / "d.yaml").write_text("version: 1\navatar:\n  image: media/a.png\n  audio: media/a.wav\n"
                                   "output:\n  path: out/talk.mp4\n")
    (folder / "bad.yaml").write_text("version: 1\navatar:\n  imag: media/a.png\n")
    (folder / "m.yaml").write_text("- dialogue: d.yaml\n- dialogue: bad.yaml\n"
                                   "- dialogue: d.yaml\n  reference: media/a.png\n")
    m = load_manifest(folder / "m.yaml")
    assert [j.output for j in m.jobs] == [(folder / "out" / "talk.mp4").resolve()]
    msgs = {p.line: p.message for p in m.invalid}
    assert "imag" in msgs[2] and "not both" in msgs[3]
    assert "did you mean 'image'?" in msgs[2]        # the dialogue's own hint survives in the row's message


def test_typos_get_a_hint_and_a_defaults_typo_is_the_headers_error(folder):
    """A typo in `defaults:` was reported as every row's error (with the fix to skip those
    rows: all of them); row typos lost the "did you mean" a dialogue.yaml gets."""
    (folder / "m.yaml").write_text("version: 1\ndefaults: {preset: draft, trancript: none}\njobs:\n"
                                   "  - {reference: media/a.png, audio: media/a.wav}\n")
    with pytest.raises(SpecError) as e:
        load_manifest(folder / "m.yaml")
    assert f"{folder / 'm.yaml'}:2:" in e.value.one_line() and "did you mean 'transcript'?" in e.value.one_line()
    (folder / "r.yaml").write_text("- {refrence: media/a.png, audio: media/a.wav}\n")
    m = load_manifest(folder / "r.yaml")
    assert "did you mean 'reference'?" in m.invalid[0].message


@pytest.mark.parametrize("text,needle", [
    ("- reference: [unclosed\n", "not valid YAML"),
    ("foo: 1\n", "unknown top-level"),
    ("version: 2\njobs: []\n", "version"),
    ("just a string\n", "list of jobs"),
])
def test_whole_manifest_errors(folder, text, needle):
    (folder / "m.yaml").write_text(text)
    with pytest.raises(SpecError) as e:
        load_manifest(folder / "m.yaml")
    assert needle in e.value.one_line()


def test_unknown_extension_missing_and_binary_manifest(folder):
    for name, data in (("m.txt", b"x"), ("bin.csv", b"\x00\x01\x02"), ("latin.csv", "é".encode("latin-1"))):
        (folder / name).write_bytes(data)
        with pytest.raises(SpecError):
            load_manifest(folder / name)
    with pytest.raises(SpecError):
        load_manifest(folder / "nope.yaml")


# ---------------------------------------------------------------------------------------
# Safety: no code from YAML, no path escapes
# ---------------------------------------------------------------------------------------

def test_yaml_python_tags_are_refused_not_run(folder):
    marker = folder / "pwned"
    (folder / "m.yaml").write_text(f"- !!python/object/apply:os.system [\"touch {marker}\"]\n")
    with pytest.raises(SpecError):
        load_manifest(folder / "m.yaml")
    assert not marker.exists()


@pytest.mark.parametrize("field,value", [
    ("reference", "../outside.png"), ("audio", "/etc/hostname"), ("output", "../../x.mp4"),
    ("reference", "link.png"),          # a symlink inside the root that points outside
])
def test_paths_may_not_escape_the_root(folder, field, value):
    (folder.parent / "outside.png").write_bytes(b"x")
    (folder / "link.png").symlink_to(folder.parent / "outside.png")
    row = {"reference": "media/a.png", "audio": "media/a.wav", "output": "o.mp4", field: value}
    (folder / "m.jsonl").write_text(json.dumps(row) + "\n")
    m = load_manifest(folder / "m.jsonl")
    assert m.jobs == [] and "outside the manifest" in m.invalid[0].message
    m = load_manifest(folder / "m.jsonl", allow_outside=True)
    assert len(m.jobs) == 1


def test_dialogue_media_outside_root_refused(folder):
    (folder.parent / "far.wav").write_bytes(b"x")
    (folder / "d.yaml").write_text("version: 1\navatar:\n  image: media/a.png\n  audio: ../far.wav\n"
                                   "output:\n  path: out/t.mp4\n")
    (folder / "m.yaml").write_text("- dialogue: d.yaml\n")
    assert "outside" in load_manifest(folder / "m.yaml").invalid[0].message
    assert len(load_manifest(folder / "m.yaml", allow_outside=True).jobs) == 1


def test_weird_but_legal_names(folder):
    for name in ("with space.png", "ünïcødé.png", "-dash.png", "; rm -rf ~.png"):
        (folder / "media" / name).write_bytes(b"x")
    rows = [{"reference": f"media/{n}", "audio": "media/a.wav", "output": f"out/{i}.mp4"}
            for i, n in enumerate(("with space.png", "ünïcødé.png", "-dash.png", "; rm -rf ~.png"))]
    (folder / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    m = load_manifest(folder / "m.jsonl")
    assert m.invalid == [] and len(m.jobs) == 4


# ---------------------------------------------------------------------------------------
# Property tests: any input -> a Manifest (rows valid or listed) or SpecError; never a crash
# ---------------------------------------------------------------------------------------

KEYS = ["id", "dialogue", "reference", "audio", "user_video", "user_audio", "output", "preset", "seed",
        "overrides", "fps", "size", "steps", "crf", "bogus", "version", "jobs", "defaults"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["media/a.png", "media/a.wav", "../x", "/etc/passwd",
                                                           "draft", "out/a.mp4", "", "\x00", "a" * 5000]))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.sampled_from(KEYS), c, max_size=5)),
                      max_leaves=12)
rows_strategy = st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), max_size=6)

_BASE = Path(tempfile.mkdtemp(prefix="echo-manifest-prop-"))
(_BASE / "media").mkdir(exist_ok=True)
for _n in ("a.png", "a.wav"):
    (_BASE / "media" / _n).write_bytes(b"x")


def _parse_ok(text: str, fmt: str) -> None:
    try:
        m = parse_manifest_text(text, fmt, _BASE / f"m.{fmt}")
    except SpecError as e:
        assert e.one_line().startswith("error: ")
        return
    for j in m.jobs:
        assert j.output.suffix.lower() in (".mp4", ".m4v", ".mov")
    for p in m.invalid:
        assert isinstance(p.message, str) and p.message


@given(rows_strategy)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_yaml_structures(rows):
    _parse_ok(yaml.safe_dump(rows, allow_unicode=True), "yaml")
    _parse_ok(yaml.safe_dump({"version": 1, "defaults": rows[0] if rows else {}, "jobs": rows}), "yaml")


@given(rows_strategy)
@settings(max_examples=80, deadline=None)
def test_property_jsonl_structures(rows):
    _parse_ok("".join(json.dumps(r) + "\n" for r in rows), "jsonl")


@given(st.text(alphabet=string.printable + "éü\x00\t{}[]:-,\"'#&*!|>%@`", max_size=300))
@settings(max_examples=120, deadline=None)
def test_property_arbitrary_text_every_format(text):
    for fmt in ("yaml", "csv", "jsonl"):
        _parse_ok(text, fmt)


@given(st.lists(st.lists(scalars.map(lambda v: "" if v is None else str(v)), min_size=1, max_size=8),
                max_size=6))
@settings(max_examples=80, deadline=None)
def test_property_csv_tables(cells):
    import csv
    import io
    header = ["reference", "audio", "output", "fps", "seed", "bogus", "preset", "id"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in cells:
        w.writerow(r)
    _parse_ok(buf.getvalue(), "csv")


# -- the dialogue parser --------------------------------------------------------------------

DKEYS = ["version", "avatar", "user", "turns", "transcript", "output", "preset", "seed", "checkpoint",
         "settings", "image", "video", "audio", "path", "speaker", "start", "end", "text", "emotion", "source",
         "fps", "size", "crf", "audio_mix", "layout", "steps", "source_path"]
dvalues = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=12), st.sampled_from(["avatar", "user", "media/a.png", "media/a.wav", "out.mp4",
                                                     "x.mov", "whisperx", "file", "side-by-side", "both", "draft"])),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.sampled_from(DKEYS), c, max_size=6)),
    max_leaves=20)


def _dialogue_ok(text: str) -> None:
    p = _BASE / "d.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        spec = load_dialogue(p)
    except (SpecError, InputError) as e:
        line = e.one_line()
        assert line.startswith("error: ") and "\n" not in line
        return
    assert isinstance(spec, DialogueSpec) and spec.version == 1


@given(st.dictionaries(st.sampled_from(DKEYS), dvalues, max_size=8))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_dialogue_structures(data):
    _dialogue_ok(yaml.safe_dump(data, allow_unicode=True))


@given(st.fixed_dictionaries({
    "version": st.sampled_from([1, 1, 2, "1"]),
    "avatar": st.fixed_dictionaries({}, optional={"image": st.sampled_from(["media/a.png", "nope.png"]),
                                                  "audio": st.sampled_from(["media/a.wav", 3]),
                                                  "video": st.just("media/a.png")}),
    "output": st.fixed_dictionaries({"path": st.sampled_from(["o.mp4", "o.avi", ""])},
                                    optional={"fps": dvalues, "size": dvalues, "layout": dvalues}),
}, optional={"turns": st.lists(st.fixed_dictionaries({"speaker": st.sampled_from(["avatar", "user", "bob"]),
                                                      "start": st.one_of(st.floats(-2, 20), st.just(float("nan"))),
                                                      "end": st.one_of(st.floats(-2, 20), st.just(float("inf")))}), max_size=4),
             "user": st.fixed_dictionaries({}, optional={"video": st.just("media/a.png")}),
             "settings": st.dictionaries(st.sampled_from(["fps", "steps", "overlap", "chunk_frames", "nope"]),
                                         dvalues, max_size=3)}))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_dialogue_near_valid(data):
    _dialogue_ok(yaml.safe_dump(data))


@given(st.text(alphabet=string.printable + "éü\t{}[]:-,\"'#&*!|>%@`", max_size=300))
@settings(max_examples=120, deadline=None)
def test_property_dialogue_arbitrary_text(text):
    _dialogue_ok(text)


def test_keys_set_twice(folder):
    """A repeated key in a row makes that row invalid (the others run); in the header or a CSV
    header it is the whole manifest's error."""
    (folder / "m.yaml").write_text(
        "- {reference: media/a.png, audio: media/a.wav, output: o/1.mp4}\n"
        "- reference: media/a.png\n  audio: media/a.wav\n  seed: 1\n  seed: 2\n  output: o/2.mp4\n")
    m = load_manifest(folder / "m.yaml")
    assert [j.id for j in m.jobs] == ["1"]
    assert [p.line for p in m.invalid] == [2] and "'seed' is set twice" in m.invalid[0].message
    (folder / "h.yaml").write_text("version: 1\ndefaults: {preset: draft}\ndefaults: {preset: quality}\njobs: []\n")
    with pytest.raises(SpecError) as e:
        load_manifest(folder / "h.yaml")
    assert "h.yaml:3" in e.value.one_line() and "twice" in e.value.one_line()
    (folder / "m.csv").write_text("reference,audio,audio,output\nmedia/a.png,media/a.wav,media/u.mp4,o/1.mp4\n")
    with pytest.raises(SpecError) as e:
        load_manifest(folder / "m.csv")
    assert "audio" in e.value.one_line() and "m.csv:1" in e.value.one_line()
    (folder / "m.jsonl").write_text('{"reference": "media/a.png", "audio": "media/a.wav", "seed": 1, "seed": 2}\n')
    m = load_manifest(folder / "m.jsonl")
    assert not m.jobs and "'seed' is set twice" in m.invalid[0].message


def test_output_that_is_an_input_is_an_invalid_row(folder):
    (folder / "d.yaml").write_text("version: 1\navatar:\n  video: media/u.mp4\noutput:\n  path: out/talk.mp4\n")
    (folder / "m.yaml").write_text(
        "- {reference: media/u.mp4, audio: media/a.wav, output: media/u.mp4}\n"
        "- {dialogue: d.yaml, output: media/u.mp4}\n"
        "- {reference: media/a.png, audio: media/a.wav, output: media/ok.mp4}\n")
    m = load_manifest(folder / "m.yaml")
    assert [j.id for j in m.jobs] == ["ok"]
    msgs = {p.line: p.message for p in m.invalid}
    assert "also the input reference" in msgs[1] and "the dialogue's avatar.video" in msgs[2]


def test_invalid_rows_keep_their_own_id(folder):
    (folder / "m.jsonl").write_text(
        '{"id": "good", "reference": "media/a.png", "audio": "media/a.wav"}\n'
        '{"id": "typo", "reference": "media/a.png", "audoi": "media/a.wav"}\n'
        '{"id": "good", "reference": "media/a.png", "audio": "media/a.wav", "output": "o/2.mp4"}\n'
        '{"reference": "media/missing.png", "audio": "media/a.wav"}\n')
    m = load_manifest(folder / "m.jsonl")
    assert [(p.line, p.id) for p in m.invalid] == [(2, "typo"), (3, None), (4, None)]
    assert str(m.invalid[0]).startswith("line 2 (typo): ")


def test_rows_settings_beat_defaults_and_ids_keep_their_letters(folder):
    (folder / "m.yaml").write_text(
        "version: 1\n"
        "defaults: {audio: media/a.wav, fps: 30, overrides: {steps: 3}}\n"
        "jobs:\n"
        "  - {id: x1, reference: media/a.png, overrides: {fps: 12}}\n"
        "  - {id: x2, reference: media/a.png, fps: 20, overrides: {fps: 12}}\n"
        "  - {id: 日本, reference: media/a.png}\n"
        "  - {id: 中国, reference: media/a.png}\n"
        "  - {id: 7, reference: media/a.png}\n")
    m = load_manifest(folder / "m.yaml")
    jobs = {j.id: j for j in m.jobs}
    assert jobs["x1"].overrides == {"fps": 12, "steps": 3}          # the row's own fps, the defaults' steps
    assert set(jobs) == {"x1", "日本", "中国", "7"} and jobs["日本"].output.name == "日本.mp4"
    assert [p.line for p in m.invalid] == [5] and "both flat and under 'overrides'" in m.invalid[0].message


def test_a_job_may_not_write_what_another_reads(folder):
    (folder / "m.yaml").write_text(
        "- {id: A, reference: media/a.png, audio: media/a.wav, output: media/u.mp4}\n"
        "- {id: B, reference: media/u.mp4, audio: media/a.wav}\n")
    m = load_manifest(folder / "m.yaml")
    assert [j.id for j in m.jobs] == ["B"]
    assert m.invalid[0].id == "A" and "input of job B" in m.invalid[0].message
