"""Presets and the precedence chain: CLI flag > dialogue.yaml > preset > built-in default."""
from __future__ import annotations

import pytest
import yaml

from echo_cli.config import PRESET_DIR, RenderSettings, load_preset, preset_names, resolve_settings
from echo_cli.errors import SpecError, UsageError


def test_required_presets_exist_and_validate():
    names = preset_names()
    assert {"draft", "default", "quality"} <= set(names)
    for n in names:
        values = load_preset(n)
        # each preset sets the knobs the issue asks for
        assert {"fps", "size", "chunk_frames", "t_prev", "overlap", "steps", "encoder_preset", "crf"} <= set(values)
        RenderSettings(**values)


def test_presets_are_ordered_by_cost():
    d, m, q = (resolve_settings(n) for n in ("draft", "default", "quality"))
    assert d.steps < m.steps < q.steps
    assert d.size <= m.size <= q.size
    assert d.crf > m.crf > q.crf


def test_precedence_chain():
    builtin = RenderSettings()
    preset = load_preset("draft")
    # preset beats built-in default
    s = resolve_settings("draft")
    assert s.size == preset["size"] != builtin.size
    assert s.cfg_audio == builtin.cfg_audio          # not set by the preset: built-in default
    # dialogue.yaml beats preset
    s = resolve_settings("draft", dialogue={"size": 384, "crf": 30})
    assert (s.size, s.crf) == (384, 30)
    assert s.steps == preset["steps"]
    # CLI beats dialogue.yaml; None means "flag not given"
    s = resolve_settings("draft", dialogue={"size": 384, "crf": 30}, cli={"size": 128, "crf": None})
    assert (s.size, s.crf) == (128, 30)


def test_precedence_through_dialogue_and_api(tmp_path, shared_data):
    """The same chain end to end: dialogue.yaml `output:`/`settings:` and render() overrides."""
    from echo_cli.api.render import plan_settings
    from echo_cli.dialogue import load_dialogue

    y = tmp_path / "d.yaml"
    y.write_text(yaml.safe_dump({
        "version": 1,
        "avatar": {"image": str(shared_data / "portraits" / "s0.jpg"),
                   "audio": str(shared_data / "audio" / "RD_Radio31_000.wav")},
        "output": {"path": "out.mp4", "fps": 30, "crf": 23},
        "settings": {"steps": 3},
        "preset": "quality",
    }))
    spec = load_dialogue(y)
    q = load_preset("quality")
    s = plan_settings(spec)
    assert (s.fps, s.crf, s.steps, s.size, s.chunk_frames) == (30, 23, 3, q["size"], q["chunk_frames"])
    s = plan_settings(spec, preset="draft", overrides={"fps": 24, "steps": None})
    assert (s.fps, s.crf, s.steps, s.size) == (24, 23, 3, load_preset("draft")["size"])


def test_unknown_preset_and_bad_override():
    with pytest.raises(UsageError, match="unknown preset"):
        resolve_settings("nope")
    with pytest.raises(UsageError, match="crf"):
        resolve_settings("default", cli={"crf": 99})


def test_broken_preset_file_is_a_spec_error(tmp_path, monkeypatch):
    import echo_cli.config as config

    (tmp_path / "bad.yaml").write_text("fps: fast\n")
    monkeypatch.setattr(config, "PRESET_DIR", tmp_path)
    with pytest.raises(SpecError, match="fps"):
        config.load_preset("bad")
    assert PRESET_DIR.name == "presets"


def test_api_render_refuses_unknown_settings_and_odd_arguments(tmp_path):
    """The Python API checks what the CLI's typed flags check: a misspelt setting would
    otherwise render with the preset's value without a word."""
    import pytest

    from echo_cli.api.render import render
    from echo_cli.errors import UsageError

    for kw in ({"overrides": {"fsp": 30}}, {"overrides": [("fps", 30)]}, {"seed": "abc"}, {"seed": 1.7},
               {"transcript": "none"}, {"audio": tmp_path / "a.wav"}):         # inline inputs beside a dialogue
        with pytest.raises(UsageError):
            render(tmp_path / "none.yaml", **kw)
