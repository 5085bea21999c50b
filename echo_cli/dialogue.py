"""dialogue.yaml: the versioned description of one conversation to render (schema version 1).

The reference with every field is docs/dialogue.md. `load_dialogue(path)` is the only
entry point: `yaml.safe_load` semantics (a composed node tree, so errors can name lines),
pydantic validation with unknown keys forbidden, paths resolved relative to the YAML file,
and every error raised as one SpecError line: `file:line: field 'x.y': what (fix: how)`.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from echo_cli.config import SEED_MAX, RenderSettings
from echo_cli.errors import InputError, ModelError, SpecError

SPEC_VERSION = 1
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov")     # what the muxer writes (H.264 + AAC in MP4)


class _Strict(BaseModel):
    # NaN passes no bound check with a clear word ("fps: .nan" read "should be <= 120")
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AvatarSpec(_Strict):
    """The person whose head is generated."""
    image: Optional[Path] = Field(None, description="reference portrait (JPEG/PNG); or use `video`")
    video: Optional[Path] = Field(None, description="reference video; its first frames give the identity")
    audio: Optional[Path] = Field(None, description="the avatar's speech; defaults to the video's own sound")

    @model_validator(mode="after")
    def _one_reference(self) -> "AvatarSpec":
        if (self.image is None) == (self.video is None):
            raise ValueError("give exactly one of `image` or `video`")
        if self.image is not None and self.audio is None:
            raise ValueError("`audio` is required when the avatar is an `image`")
        return self


class UserSpec(_Strict):
    """The conversation partner (both optional: a silent, unseen user is allowed)."""
    video: Optional[Path] = Field(None, description="the user's face video (or a still image)")
    audio: Optional[Path] = Field(None, description="the user's speech; defaults to the video's own sound")


class TurnSpec(_Strict):
    """Who speaks when. Omit `turns` to derive them from voice activity."""
    speaker: Literal["avatar", "user"]
    start: float = Field(ge=0, description="seconds from the start")
    end: float = Field(gt=0, description="seconds from the start; > start")
    text: Optional[str] = Field(None, description="what is said (read by the LAU; kept as given, else the transcript's words)")
    emotion: Optional[str] = Field(None, description="free text, e.g. 'happy' or 'calm and warm'")

    @model_validator(mode="after")
    def _ordered(self) -> "TurnSpec":
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be greater than start ({self.start})")
        return self


RECOGNITION_SOURCES = ("auto", "whisperx", "faster-whisper", "none")   # TranscriptSpec.source, bar "file"


class TranscriptSpec(_Strict):
    """Where word timings come from."""
    # auto: preprocess/transcript.py; none: no speech recognition (the turns' text, if any, is all the LAU reads)
    source: Literal["auto", "whisperx", "faster-whisper", "file", "none"] = "auto"
    path: Optional[Path] = Field(None, description="SRT, VTT or JSON transcript when source is `file`")

    @model_validator(mode="before")
    @classmethod
    def _path_means_file(cls, data):
        if isinstance(data, dict) and data.get("path") is not None and "source" not in data:
            return {**data, "source": "file"}        # {path: words.srt} means: read it
        return data

    @model_validator(mode="after")
    def _path_for_file(self) -> "TranscriptSpec":
        if self.source == "file" and self.path is None:
            raise ValueError("`path` is required when source is `file`")
        if self.path is not None and self.source != "file":    # it was checked, then never read
            raise ValueError(f"`path` is only read with source `file` (source is `{self.source}`): "
                             "set `source: file`, or remove `path`")
        return self


class OutputSpec(_Strict):
    """The video to write. fps/size/crf override the preset (a CLI flag overrides them)."""
    path: Path = Field(description="the .mp4 to write")
    fps: Optional[float] = Field(None, gt=0, le=120)
    size: Optional[int] = Field(None, ge=64, le=4096, description="avatar height/width in pixels")
    crf: Optional[int] = Field(None, ge=0, le=51)
    audio_mix: Literal["avatar", "both"] = Field("avatar", description="which voices are in the output")
    layout: Literal["avatar", "side-by-side"] = Field("avatar", description="avatar alone, or user | avatar")

    @field_validator("path")
    @classmethod
    def _mp4(cls, v: Path) -> Path:
        if v.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError("output path must end in .mp4 (or .m4v/.mov)")
        return v


# Any RenderSettings knob may be set under `settings:` (all optional; the same bounds, so a
# value out of range is an error at its own line of the file)
SettingsSpec = create_model(
    "SettingsSpec", __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False),
    **{name: (Optional[Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation], None)
       for name, f in RenderSettings.model_fields.items()},
)


class DialogueSpec(_Strict):
    version: Literal[1] = Field(description="schema version; this echo-cli reads 1")
    avatar: AvatarSpec
    user: Optional[UserSpec] = None
    turns: Optional[list[TurnSpec]] = Field(None, description="omit to derive turns from voice activity")
    transcript: TranscriptSpec = TranscriptSpec()
    output: OutputSpec
    preset: str = Field("default", description="draft | default | quality (echo-cli presets)")
    seed: int = Field(0, ge=0, le=SEED_MAX, strict=True,          # `seed: true` is no seed
                      description="sampling seed; same seed + inputs = same video")
    checkpoint: Optional[Path] = Field(None, description="model checkpoint (.safetensors); default: bundled")
    settings: Optional[SettingsSpec] = Field(None, description="advanced: any preset key")  # type: ignore[valid-type]

    # -- filled by the loader, not by the YAML --------------------------------------
    source_path: Optional[Path] = Field(None, exclude=True, repr=False)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        from echo_cli.config import preset_names

        names = preset_names()
        if v not in names:
            close = difflib.get_close_matches(v, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown preset '{v}'; {hint}presets: {', '.join(names)}")
        return v

    @field_validator("version", mode="before")
    @classmethod
    def _version_number(cls, v):
        # True == 1 and '1' read as "unsupported version '1' (this echo-cli reads version: 1)"
        if isinstance(v, bool) or isinstance(v, str):
            raise ValueError(f"version is the number 1, not {v!r}: write `version: 1` (no quotes)")
        return v

    @model_validator(mode="after")
    def _checks(self) -> "DialogueSpec":
        # "@field@ message": the loader points the error at that field's line (see _spec_error)
        if self.output.layout == "side-by-side" and (self.user is None or self.user.video is None):
            raise ValueError("@output.layout@ layout side-by-side needs user.video")
        if self.output.audio_mix == "both" and self.user is None:
            raise ValueError("@output.audio_mix@ audio_mix both needs a user (user.audio or user.video)")
        for k in ("fps", "size", "crf"):       # one dialogue level: which of the two would win is a guess
            if self.settings is not None and getattr(self.settings, k, None) is not None \
                    and getattr(self.output, k) is not None:
                raise ValueError(f"@settings.{k}@ {k} is set both here and as output.{k}; keep one of them")
        for speaker in ("avatar", "user"):
            spans = sorted((t.start, t.end, i) for i, t in enumerate(self.turns or []) if t.speaker == speaker)
            for (s0, e0, i0), (s1, e1, i1) in zip(spans, spans[1:]):
                if s1 < e0:
                    raise ValueError(f"@turns.{max(i0, i1)}@ {speaker} turns overlap: "
                                     f"turn {i0} ({s0}-{e0}) and turn {i1} ({s1}-{e1})")
        return self

    # -- helpers ---------------------------------------------------------------------
    def setting_overrides(self) -> dict:
        """The dialogue level of the precedence chain (settings:, then output.fps/size/crf)."""
        out = {k: v for k, v in (self.settings.model_dump() if self.settings else {}).items() if v is not None}
        out.update({k: getattr(self.output, k) for k in ("fps", "size", "crf") if getattr(self.output, k) is not None})
        return out

    def media_paths(self) -> dict[str, Path]:
        """Every file the spec refers to, by dotted field name."""
        found: dict[str, Path] = {}
        for section in ("avatar", "user", "transcript"):
            obj = getattr(self, section)
            if obj is None:
                continue
            for name in type(obj).model_fields:
                v = getattr(obj, name)
                if isinstance(v, Path):
                    found[f"{section}.{name}"] = v
        if self.checkpoint is not None:
            found["checkpoint"] = self.checkpoint
        return found


SECTIONS: dict[str, type[BaseModel]] = {
    "avatar": AvatarSpec, "user": UserSpec, "turns": TurnSpec, "transcript": TranscriptSpec,
    "output": OutputSpec, "settings": SettingsSpec,
}


# ---------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------
def _node_line(root, loc: tuple) -> tuple[int | None, bool]:
    """1-based line of the deepest YAML node on `loc`; second value: the full loc was found."""
    import yaml

    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line, False
    return line, True


def _known_keys(loc: tuple) -> list[str]:
    parents = [p for p in loc[:-1] if isinstance(p, str)]
    model = SECTIONS.get(parents[-1]) if parents else DialogueSpec
    if model is None:
        return []
    return [k for k in model.model_fields if k != "source_path"]


def _explain(err: dict, loc: tuple) -> tuple[str, str]:
    """(message, fix) for one pydantic error."""
    typ, msg = err["type"], err["msg"]
    field = ".".join(str(p) for p in loc) or "(top level)"
    if typ == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(loc)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        fix = f"did you mean '{close[0]}'?" if close else f"remove it; known keys here: {', '.join(known)}"
        return f"field '{field}': unknown key", fix
    if typ == "path_type":      # pydantic's words: "Input is not a valid path for <class 'pathlib.Path'>"
        return f"field '{field}': expected a file path, got {err.get('input')!r}", "write a path, e.g. media/avatar.png"
    if typ == "missing":
        return f"field '{field}': required field is missing", f"add `{loc[-1]}:`" + (" with `1`" if loc == ("version",) else "")
    if typ == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        got = str(err.get("input"))
        close = difflib.get_close_matches(got, options, n=1, cutoff=0.5)
        fix = f"did you mean '{close[0]}'?" if close else f"use one of: {expected}"
        if loc == ("version",):
            return f"field 'version': unsupported version {got!r}", "this echo-cli reads `version: 1`"
        return f"field '{field}': {msg}", fix
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"field '{field}': {msg}", "correct the value (see docs/dialogue.md)"


def _spec_error(path: Path, root, err: dict) -> SpecError:
    loc = tuple(err["loc"])
    msg = err.get("msg", "")
    if "@" in msg and msg.count("@") >= 2:      # a model-level check naming its field
        pre, field, rest = msg.split("@", 2)
        loc = tuple(int(p) if p.isdigit() else p for p in field.split("."))
        err = {**err, "loc": loc, "msg": pre + rest.strip()}
    line, _ = _node_line(root, loc)
    message, fix = _explain(err, loc)
    where = f"{path}:{line}" if line else str(path)
    return SpecError(message, path=where, fix=fix)


def yaml_fix(problem: str, default: str) -> str:
    """The fix for a YAML parse error; a tab is the common one, and the parser's words for
    it ("found character '\\t' that cannot start any token") do not say what to do."""
    if "'\\t'" in problem:
        return "indent with spaces: YAML does not allow tabs for indentation"
    return default


def dialogue_file(path: str | Path) -> Path:
    """`echo-cli init DIR` writes DIR/dialogue.yaml, so a folder holding one means that file
    (render, batch rows, eval --turns); any other path is itself."""
    path = Path(path)
    return path / "dialogue.yaml" if path.is_dir() and (path / "dialogue.yaml").is_file() else path


def load_dialogue(path: str | Path, *, check_files: bool = True) -> DialogueSpec:
    """Read and validate a dialogue.yaml; relative paths become absolute (from the YAML's folder).

    SpecError (exit 3) for YAML/schema problems, InputError (exit 4) for a referenced file
    that does not exist; both name `file:line` and the field.
    """
    import yaml

    path = dialogue_file(path)
    if path.is_dir():
        raise SpecError("this is a folder, and it has no dialogue.yaml", path=path,
                        fix="give the dialogue file's path, or create one with `echo-cli init DIR`")
    if not path.is_file():
        raise SpecError("dialogue file not found", path=path, fix="check the path, or create one with `echo-cli init DIR`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise SpecError("not a dialogue file (binary content: a media file?)", path=path,
                            fix="give the dialogue.yaml that names the media (avatar.image, avatar.audio, ...); "
                                "`echo-cli init DIR` writes one") from e
        raise SpecError(f"cannot read dialogue file: {e}", path=path, fix="save it as UTF-8 text") from e
    except OSError as e:
        raise SpecError(f"cannot read dialogue file: {e}", path=path, fix="check its permissions") from e
    try:
        # compose = safe parse into nodes (with line numbers); construct with the safe loader
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"not valid YAML: {problem}", path=where,
                        fix=yaml_fix(problem, "fix the YAML syntax (indentation, colons, quotes)")) from e
    except RecursionError as e:     # PyYAML composes recursively: thousands of nested brackets
        raise SpecError("the YAML is nested too deeply", path=path, fix="flatten the YAML") from e
    if not isinstance(data, dict):
        raise SpecError("a dialogue file must be a YAML mapping (key: value lines)", path=f"{path}:1",
                        fix="start from `echo-cli init DIR`")
    dup = duplicate_key(root)
    if dup is not None:
        raise SpecError(f"field '{dup[0]}': set twice (also at line {dup[1]}); only the last would count",
                        path=f"{path}:{dup[2]}", fix="keep one of them")
    if "source_path" in data:
        raise _spec_error(path, root, {"type": "extra_forbidden", "loc": ("source_path",), "msg": ""})
    try:
        spec = DialogueSpec.model_validate(data)
    except ValidationError as e:
        errs = e.errors()
        # an unknown key is the root cause of the "missing" errors it usually comes with
        first = next((x for x in errs if x["type"] == "extra_forbidden"), errs[0])
        raise _spec_error(path, root, first) from None

    # Resolve paths relative to the YAML file's folder.
    base = path.resolve().parent
    def res(p: Path | None) -> Path | None:
        return None if p is None else (p.expanduser() if p.expanduser().is_absolute() else base / p)

    updates: dict[str, Any] = {"source_path": path.resolve()}
    updates["avatar"] = spec.avatar.model_copy(update={k: res(getattr(spec.avatar, k)) for k in ("image", "video", "audio")})
    if spec.user is not None:
        updates["user"] = spec.user.model_copy(update={k: res(getattr(spec.user, k)) for k in ("video", "audio")})
    updates["transcript"] = spec.transcript.model_copy(update={"path": res(spec.transcript.path)})
    updates["output"] = spec.output.model_copy(update={"path": res(spec.output.path)})
    updates["checkpoint"] = res(spec.checkpoint)
    spec = spec.model_copy(update=updates)

    clash = output_clash(spec)
    if clash is not None:
        line, _ = _node_line(root, ("output", "path"))
        raise SpecError(f"field 'output.path': the output is also the input {clash}; rendering would overwrite it",
                        path=f"{path}:{line}", fix="write the video to another file")
    if check_files:
        for field, p in spec.media_paths().items():
            if not p.is_file():
                line, _ = _node_line(root, tuple(field.split(".")))
                what = ("is a folder, not a file" if p.is_dir() else "is not a regular file" if p.exists()
                        else "is a broken or looping symbolic link" if p.is_symlink() else "file not found")
                # a missing model is the checkpoint's exit code (5), as --checkpoint gets it
                cls = ModelError if field == "checkpoint" else InputError
                raise cls(f"field '{field}': {what}: {p}", path=f"{path}:{line}",
                          fix="fix the path (relative paths start at the YAML file's folder)")
    return spec


def output_clash(spec) -> str | None:
    """The field whose file the spec's output.path would overwrite, if any."""
    from echo_cli.io_atomic import same_file

    return next((field for field, p in spec.media_paths().items() if same_file(spec.output.path, p)), None)


def yaml_line(path: str | Path, field: str, strict: bool = False) -> str:
    """`file:line` of a dotted field (for errors raised later, e.g. by preflight); with
    `strict`, "" when the file does not set that field."""
    import yaml

    path = Path(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except Exception:
        return "" if strict else str(path)
    parts = tuple(int(p) if p.isdigit() else p for p in field.split("."))
    line, found = _node_line(root, parts)
    if strict and not found:
        return ""
    return f"{path}:{line}" if line else str(path)


def duplicate_key(root) -> tuple[str, int, int] | None:
    """(dotted key, first line, repeated line) of the first key a YAML mapping sets twice.
    PyYAML keeps the last value silently; a repeated key is nearly always a paste slip that
    would render with the wrong file or seed."""
    import yaml

    found = []
    stack = [(root, "")]
    walked: set[int] = set()    # an aliased node is one object: walk it once (nested aliases
    while stack:                # would otherwise cost 9^depth visits from a ten-line file)
        node, prefix = stack.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                name = f"{prefix}{k.value}"
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if name in seen:
                        found.append((name, seen[name], k.start_mark.line + 1))
                    seen[name] = k.start_mark.line + 1
                stack.append((v, name + "."))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, f"{prefix}{i}.") for i, v in enumerate(node.value))
    return min(found, key=lambda d: d[2]) if found else None      # the first in the file
