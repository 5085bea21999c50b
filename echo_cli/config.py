"""Render settings (presets) and their precedence.

Precedence, highest first: CLI flag > dialogue.yaml > preset > built-in default.
`resolve_settings` is the one place that applies it (tested in tests/test_presets.py).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from echo_cli.errors import SpecError, UsageError

PRESET_DIR = Path(__file__).resolve().parent / "presets"     # package data: a wheel install has it too
SEED_MAX = 2**31 - 1        # one bound for --seed, dialogue.yaml and manifest rows


class RenderSettings(BaseModel):
    """Every knob a preset may set. Field comments are the documentation."""
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fps: float = Field(25.0, gt=0, le=120, description="output frame rate")
    size: int = Field(512, ge=64, le=4096, description="output height in pixels; the width keeps the "
                      "reference's aspect ratio")
    chunk_frames: int = Field(64, ge=8, le=1024, description="frames generated per chunk (T_cur)")
    t_prev: int = Field(8, ge=0, le=256, description="previously generated frames fed back as clean context")
    overlap: int = Field(4, ge=0, le=128, description="frames cross-faded between consecutive chunks")
    steps: int = Field(4, ge=1, le=100, description="sampling steps of the flow-matching sampler")
    cfg_audio: float = Field(1.5, ge=0, le=10, description="classifier-free guidance scale on avatar audio")
    # 2.0: doubles the avatar's reaction to the user at no cost to the lips (SDCM keeps the
    # user context off the mouth) and no extra compute (cfg_audio != 1 already runs the
    # three guidance branches); measured in docs/lcu.md
    cfg_user: float = Field(2.0, ge=0, le=10, description="classifier-free guidance scale on user context")
    lip_temperature: float = Field(0.0, ge=0, le=1, description="scale of the sampling noise on the mouth "
                                   "(articulation) components: 0 = the most likely lip motion for the audio")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the generator runs: auto = a CUDA "
                                                   "GPU when torch sees one, else the CPU")
    attention: Literal["auto", "xformers", "sdpa"] = Field("auto", description="attention kernels: auto = xformers "
                                                           "on CUDA when installed, else torch SDPA")
    encoder_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = "veryfast"
    crf: int = Field(20, ge=0, le=51, description="H.264 constant rate factor (lower = better)")

    def model_post_init(self, __context: Any) -> None:
        if self.overlap >= self.chunk_frames:
            raise ValueError("overlap must be smaller than chunk_frames")


SETTING_KEYS = tuple(RenderSettings.model_fields)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict:
    """Raw, validated preset values (only the keys the preset sets)."""
    import yaml

    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown preset '{name}'", fix=f"use one of: {', '.join(preset_names())}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(f"preset is not valid YAML: {e}", path=path, fix="fix the YAML syntax") from e
    values = {k: v for k, v in data.items() if k != "description"}
    try:
        RenderSettings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        raise SpecError(f"field '{'.'.join(map(str, err['loc']))}': {err['msg']}", path=path,
                        fix="correct the preset value") from e
    return values


def preset_description(name: str) -> str:
    import yaml

    data = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text()) or {}
    return str(data.get("description", ""))


def resolve_settings(preset: str = "default", dialogue: dict | None = None,
                     cli: dict | None = None, dialogue_path: Path | None = None) -> RenderSettings:
    """Merge built-in defaults < preset < dialogue.yaml output values < CLI flags (None = unset).
    A value out of bounds is a usage error (exit 2), or, when it came from the dialogue file
    `dialogue_path`, a spec error naming its line (exit 3)."""
    merged: dict = {}
    merged.update(load_preset(preset))
    merged.update({k: v for k, v in (dialogue or {}).items() if v is not None and k in SETTING_KEYS})
    merged.update({k: v for k, v in (cli or {}).items() if v is not None and k in SETTING_KEYS})
    try:
        return RenderSettings(**merged)
    except ValidationError as e:
        err = e.errors()[0]
        # no loc: the one cross-field check (overlap < chunk_frames), which either key can break
        keys = [".".join(map(str, err["loc"]))] if err["loc"] else ["overlap", "chunk_frames"]
        from_file = [k for k in keys if k in (dialogue or {}) and k not in (cli or {})]
        key = from_file[0] if from_file else keys[0]
        msg = err["msg"].removeprefix("Value error, ")
        if dialogue_path is not None and from_file and not any(k in (cli or {}) for k in keys):
            from echo_cli.dialogue import yaml_line

            field = f"output.{key}" if key in ("fps", "size", "crf") and yaml_line(dialogue_path, f"output.{key}", strict=True) \
                else f"settings.{key}"
            raise SpecError(f"field '{field}': {msg}", path=yaml_line(dialogue_path, field),
                            fix="correct the value (see `echo-cli presets` for the bounds)") from e
        raise UsageError(f"setting '{key}': {msg}", fix="change the flag or dialogue value") from e
