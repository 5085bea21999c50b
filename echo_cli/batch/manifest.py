"""Batch manifests: YAML, CSV or JSON Lines, one render job per row.

A row either names a dialogue.yaml (`dialogue: talks/a.yaml`) or carries the inputs inline
(`reference`, `audio`, optional `user_video` / `user_audio` / `transcript`, `output`, `preset`, `seed` and
any render setting such as `fps`, `size`, `steps` as a preset override). Paths are relative
to the manifest's folder. The whole manifest is validated before any work starts and every
bad row is reported with its line number, so a farm never burns an hour before tripping on
row 900. Loading never runs code: YAML goes through `yaml.safe_load`/`compose` only.

Why a path may not leave the manifest's root: manifests are shared between users and
machines; a row pointing at `../../home/x/.ssh/id_rsa` as "audio" or writing its output over
`/etc/...` must be refused unless the user says `--allow-outside`.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from echo_cli.config import SEED_MAX, SETTING_KEYS, RenderSettings, load_preset
from echo_cli.dialogue import OUTPUT_SUFFIXES, RECOGNITION_SOURCES, dialogue_file, duplicate_key, yaml_fix
from echo_cli.io_atomic import nearest_existing, same_file
from echo_cli.errors import EchoError, SpecError

MANIFEST_VERSION = 1
INPUT_FIELDS = ("reference", "audio", "user_video", "user_audio")
FORMATS = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_ID_RE = re.compile(r"[^\w.-]+")      # letters of any script stay (日本 and 中国 are two jobs)


# --------------------------------------------------------------------------------------
# Row schema
# --------------------------------------------------------------------------------------

class ManifestRow(BaseModel):
    """One job as written in the manifest (before path resolution)."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(None, description="job name used in reports; default: the output file's stem")
    dialogue: str | None = Field(None, description="a dialogue.yaml describing the whole job")
    reference: str | None = Field(None, description="avatar reference image or video")
    audio: str | None = Field(None, description="avatar speech (wav/mp3/... or a video's audio track)")
    user_video: str | None = Field(None, description="the user's video (listening context), optional")
    user_audio: str | None = Field(None, description="the user's audio, optional")
    transcript: str | None = Field(None, description="auto | whisperx | faster-whisper | none, or an .srt/.vtt/.json "
                                                     "file of the avatar's words (inline rows)")
    output: str | None = Field(None, description="output .mp4; default <output-dir>/<id>.mp4")
    preset: str | None = Field(None, description="preset name (draft, default, quality, ...)")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="sampling seed")
    overrides: dict[str, Any] = Field(default_factory=dict, description="render settings over the preset")

    @field_validator("id", "dialogue", "reference", "audio", "user_video", "user_audio", "transcript", "output", "preset")
    @classmethod
    def _no_empty(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("contains a NUL character")
        return v or None

    def model_post_init(self, __context: Any) -> None:
        if self.dialogue is None and not (self.reference and self.audio):
            raise ValueError("a row needs either 'dialogue' or both 'reference' and 'audio'")
        if self.dialogue is not None and (self.reference or self.audio or self.user_video or self.user_audio):
            raise ValueError("give either 'dialogue' or inline inputs, not both")
        if self.dialogue is not None and self.transcript:
            raise ValueError("'transcript' is for inline rows; a dialogue.yaml sets its own (transcript: source:)")
        unknown = sorted(set(self.overrides) - set(SETTING_KEYS))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known: {', '.join(SETTING_KEYS)}")


@dataclass(frozen=True)
class Job:
    """A validated job with absolute paths: what the runner schedules and hashes."""
    id: str
    index: int                      # position among all rows of the manifest (sharding key)
    line: int                       # 1-based line of the row in the manifest (for messages)
    output: Path
    dialogue: Path | None = None
    inputs: dict[str, Path] = field(default_factory=dict)   # reference/audio/user_video/user_audio
    preset: str | None = None
    seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    transcript: str | None = None   # an inline row's transcript source (a file is inputs["transcript"])
    dialogue_media: dict[str, Path] = field(default_factory=dict)   # files its dialogue names, by field (resolved)

    def settings_dict(self) -> dict:
        """The part of the job (other than file contents) that changes the rendered video."""
        d = {"preset": self.preset, "seed": self.seed, "overrides": dict(sorted(self.overrides.items())),
             "kind": "dialogue" if self.dialogue else "inline"}
        if self.transcript:             # absent when unset: older jobs keep their keys (nothing re-renders)
            d["transcript"] = self.transcript
        return d

    def to_dict(self) -> dict:
        return {"id": self.id, "index": self.index, "line": self.line, "output": str(self.output),
                "dialogue": str(self.dialogue) if self.dialogue else None,
                "inputs": {k: str(v) for k, v in self.inputs.items()}, "preset": self.preset,
                "seed": self.seed, "overrides": dict(self.overrides), "transcript": self.transcript}


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str
    index: int = 0                  # position among all rows (sharding key, as for Job.index)
    id: str | None = None           # the row's own `id`, when it gave one (the report keys rows by it)

    def __str__(self) -> str:
        return f"line {self.line}{f' ({self.id})' if self.id else ''}: {self.message}"


@dataclass
class Manifest:
    path: Path
    root: Path
    jobs: list[Job]                 # valid rows, in manifest order
    invalid: list[RowProblem]       # bad rows; empty when the manifest is clean
    n_rows: int

    def raise_if_invalid(self) -> None:
        if self.invalid:
            raise manifest_error(self.path, self.invalid)


def manifest_error(path: Path, problems: list[RowProblem]) -> SpecError:
    shown = "; ".join(str(p) for p in problems[:20])
    more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
    return SpecError(f"{len(problems)} invalid row(s): {shown}{more}", path=path,
                     fix="correct these rows, or pass --skip-invalid to run only the valid ones")


# --------------------------------------------------------------------------------------
# Reading the three formats into (line, raw dict) pairs
# --------------------------------------------------------------------------------------

def _read_yaml(text: str, path: Path) -> tuple[list[tuple[int, Any]], dict]:
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"manifest is not valid YAML{where}: {problem}", path=path,
                        fix=yaml_fix(problem, "fix the YAML syntax (check indentation and quoting)")) from e
    except RecursionError as e:
        raise SpecError("manifest YAML is nested too deeply", path=path, fix="flatten the YAML") from e
    defaults: dict = {}
    items_node = root
    if data is None:
        return [], defaults
    if isinstance(root, yaml.MappingNode):      # the header (version, defaults): one for every job
        header = yaml.MappingNode(root.tag, [(k, v) for k, v in root.value if getattr(k, "value", None) != "jobs"])
        dup = duplicate_key(header) or _repeated(root, "jobs")
        if dup is not None:
            raise SpecError(f"key '{dup[0]}' is set twice (lines {dup[1]} and {dup[2]}); only the last would count",
                            path=f"{path}:{dup[2]}", fix="keep one of them")
    if isinstance(data, dict):
        unknown = sorted(str(k) for k in data if k not in ("version", "defaults", "jobs"))
        if unknown:
            raise SpecError(f"unknown top-level key(s) {unknown}", path=path,
                            fix="a YAML manifest is a list of jobs, or a mapping with version, defaults and jobs")
        version = data.get("version", MANIFEST_VERSION)
        if version != MANIFEST_VERSION:
            raise SpecError(f"unsupported manifest version {version!r}", path=path,
                            fix=f"set 'version: {MANIFEST_VERSION}'")
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise SpecError("'defaults' must be a mapping of field: value", path=path, fix="see docs/batch.md")
        _check_default_keys(root, path)
        data = data.get("jobs")
        items_node = next((v for k, v in root.value if getattr(k, "value", None) == "jobs"), None)
        if data is None:
            return [], defaults
    if not isinstance(data, list) or items_node is None or not hasattr(items_node, "value") \
            or not isinstance(items_node.value, list):
        raise SpecError("manifest must be a list of jobs (or a mapping with a 'jobs' list)", path=path,
                        fix="see docs/batch.md for the manifest format")
    rows = []
    for i, item in enumerate(data):
        node = items_node.value[i] if i < len(items_node.value) else None
        line = node.start_mark.line + 1 if node is not None else 0
        dup = duplicate_key(node) if node is not None else None
        if dup is not None:                     # this row alone is invalid
            item = ValueError(f"key '{dup[0]}' is set twice (lines {dup[1]} and {dup[2]}); keep one of them")
        rows.append((line, item))
    return rows, defaults


def _known_keys() -> list[str]:
    return [*ManifestRow.model_fields, *SETTING_KEYS]


def _did_you_mean(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_default_keys(root, path: Path) -> None:
    """A typo in `defaults:` is the header's one error at its own line (it was reported as
    every row's, with the fix to skip those rows: all of them)."""
    node = next((v for k, v in root.value if getattr(k, "value", None) == "defaults"), None)
    for k, _ in getattr(node, "value", None) or []:
        key = getattr(k, "value", None)
        if isinstance(key, str) and key not in _known_keys():
            raise SpecError(f"field 'defaults.{key}': unknown key{_did_you_mean(key)}",
                            path=f"{path}:{k.start_mark.line + 1}",
                            fix="remove or correct it (a row's fields or render settings, docs/batch.md)")


def _repeated(root, key: str) -> tuple[str, int, int] | None:
    lines = [k.start_mark.line + 1 for k, _ in root.value if getattr(k, "value", None) == key]
    return (key, lines[0], lines[1]) if len(lines) > 1 else None


def _read_csv(text: str, path: Path) -> list[tuple[int, Any]]:
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header: list[str] | None = None
        rows = []
        while True:
            line = reader.line_num + 1          # the physical line this record starts on
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not any(c.strip() for c in cells):
                continue                        # blank line
            if header is None:
                header = [c.strip() for c in cells]
                twice = sorted({k for k in header if k and header.count(k) > 1})
                if twice:
                    raise SpecError(f"the header names {', '.join(twice)} twice", path=f"{path}:{line}",
                                    fix="keep one column of each name")
                continue
            if len(cells) > len(header):
                rows.append((line, ValueError(f"{len(cells) - len(header)} cell(s) more than the header has")))
                continue
            row: dict[str, Any] = {}
            overrides: dict[str, Any] = {}
            for k, v in zip(header, cells):     # short rows: missing cells are empty
                v = v.strip()
                if v == "" or k == "":
                    continue
                if k in SETTING_KEYS:
                    overrides[k] = _csv_value(v)
                elif k == "seed":
                    row[k] = _csv_value(v)
                else:
                    row[k] = v
            if overrides:
                row["overrides"] = overrides
            rows.append((line, row))
        return rows
    except csv.Error as e:
        raise SpecError(f"manifest is not valid CSV: {e}", path=path, fix="check quoting and the header row") from e


def _csv_value(v: str) -> Any:
    """CSV cells are text; numbers stay numbers so pydantic can range-check them."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _read_jsonl(text: str, path: Path) -> list[tuple[int, Any]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            rows.append((n, json.loads(s, object_pairs_hook=_unique_keys)))
        except (json.JSONDecodeError, RecursionError) as e:
            rows.append((n, ValueError(f"not valid JSON: {getattr(e, 'msg', e)}")))
        except KeyError as e:
            rows.append((n, ValueError(f"key '{e.args[0]}' is set twice; keep one of them")))
    return rows


def _file_in_the_way(output: Path) -> Path | None:
    """The nearest existing folder above `output`, when it is a file instead (nothing can be
    written below it)."""
    p = nearest_existing(output.parent)
    return p if os.path.lexists(p) and not p.is_dir() else None


def _unique_keys(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise KeyError(k)
        out[k] = v
    return out


# --------------------------------------------------------------------------------------
# Validation and path resolution
# --------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _preset_values(name: str) -> tuple:
    return tuple(sorted(load_preset(name).items()))


def _check_settings(preset: str | None, overrides: dict) -> None:
    base = dict(_preset_values(preset or "default"))
    base.update(overrides)
    RenderSettings(**base)


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _resolve(value: str, base: Path, root: Path, allow_outside: bool, what: str, must_exist: bool) -> Path:
    p = Path(os.path.expanduser(value)) if value.startswith("~") else Path(value)
    p = (base / p) if not p.is_absolute() else p
    resolved = p.resolve()              # follows symlinks: a link inside the root to /etc is outside
    if not allow_outside and not _within(resolved, root):
        raise ValueError(f"{what} '{value}' is outside the manifest's folder {root} "
                         f"(pass --allow-outside to permit it)")
    if what == "dialogue":
        resolved = dialogue_file(resolved)          # a folder as `echo-cli init DIR` makes it, as for render
    if must_exist:
        if not resolved.exists():
            raise ValueError(f"{what} file not found: '{value}'")
        if resolved.is_dir():
            raise ValueError(f"{what} is a folder, not a file: '{value}'")
        if not os.access(resolved, os.R_OK):
            raise ValueError(f"{what} is not readable: '{value}'")
    return resolved


def _pydantic_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and err["loc"]:
            msg = f"unknown key{_did_you_mean(str(err['loc'][-1]))}"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _check_dialogue(path: Path, root: Path, allow_outside: bool) -> tuple[Path, dict[str, Path]]:
    """Validate a dialogue.yaml row (schema + files); returns its output path and the files it
    reads (by field). Those files obey the same root rule as the manifest's own paths."""
    from echo_cli.api.render import load_spec     # batch talks to the api layer only

    spec = load_spec(path)
    media = spec.media_paths()
    if not allow_outside:
        for name, p in {**media, "output.path": spec.output.path}.items():
            if not _within(Path(p).resolve(), root):
                raise ValueError(f"the dialogue's {name} {p} is outside the manifest's folder {root} "
                                 f"(pass --allow-outside to permit it)")
    return Path(spec.output.path).resolve(), {k: Path(v).resolve() for k, v in media.items()}


INLINE_INPUTS = ("reference", "audio", "user_video", "user_audio", "transcript")


def _settings_of(row: dict, where: str) -> dict:
    """A mapping's render settings, flat keys and its `overrides:` together (a key in both is
    an error: which one would win is a guess)."""
    ov = row.get("overrides") or {}
    if not isinstance(ov, dict):
        raise ValueError("'overrides' must be a mapping of setting: value")
    flat = {k: v for k, v in row.items() if isinstance(k, str) and k in SETTING_KEYS}
    both = sorted(set(flat) & set(ov))
    if both:
        raise ValueError(f"{', '.join(both)} set both flat and under 'overrides' in {where}; keep one")
    return {**ov, **flat}


def _row_id(raw: Any, taken) -> str | None:
    """The `id` a row that failed validation gave itself, cleaned like a job id (None when a
    valid row already has it: the report keys rows by id)."""
    rid = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(rid, (str, int)) and not isinstance(rid, bool):
        rid = _ID_RE.sub("_", str(rid))[:120]
        return rid if rid and rid not in taken else None
    return None


def _job_id(row: ManifestRow, index: int) -> str:
    if row.id:
        return row.id
    if row.output:
        return Path(row.output).stem
    if row.dialogue:
        return Path(row.dialogue).stem
    return f"job{index:05d}"


def parse_manifest_text(text: str, fmt: str, path: Path, *, root: Path | None = None,
                        output_dir: Path | None = None, allow_outside: bool = False,
                        check_files: bool = True) -> Manifest:
    """Parse and validate manifest text. Raises SpecError only for a manifest that cannot be
    read as a whole; bad rows are collected in `Manifest.invalid` with their line numbers."""
    path = Path(path)
    base = path.parent.resolve()
    root = (root or base).resolve()
    output_dir = Path(output_dir).resolve() if output_dir else base / "renders"
    if fmt == "yaml":
        raw_rows, defaults = _read_yaml(text, path)
    elif fmt == "csv":
        raw_rows, defaults = _read_csv(text, path), {}
    elif fmt == "jsonl":
        raw_rows, defaults = _read_jsonl(text, path), {}
    else:
        raise SpecError(f"unknown manifest format '{fmt}'", path=path, fix="use .yaml, .csv or .jsonl")

    jobs: list[Job] = []
    invalid: list[RowProblem] = []
    seen_out: dict[Path, int] = {}
    seen_id: dict[str, int] = {}
    for index, (line, raw) in enumerate(raw_rows):
        try:
            if isinstance(raw, Exception):
                raise raw
            if not isinstance(raw, dict):
                raise ValueError(f"a row must be a mapping of field: value, got {type(raw).__name__}")
            # Settings may be written flat (fps: 25) or under 'overrides'; both end up in
            # overrides, and the row's own beat the defaults' whichever way each was written.
            shared = defaults
            if raw.get("dialogue"):     # its dialogue.yaml names its own inputs: inline defaults are for inline rows
                shared = {k: v for k, v in defaults.items() if k not in INLINE_INPUTS}
            merged = {**shared, **raw}
            merged["overrides"] = {**_settings_of(defaults, "defaults"), **_settings_of(raw, "this row")}
            for k in SETTING_KEYS:
                merged.pop(k, None)
            merged = {str(k): v for k, v in merged.items()}
            if isinstance(merged.get("id"), int) and not isinstance(merged["id"], bool):
                merged["id"] = str(merged["id"])        # `id: 7` in YAML/JSON, as in CSV
            row = ManifestRow(**merged)
            _check_settings(row.preset, row.overrides)
            inputs = {}
            for name in INPUT_FIELDS:
                value = getattr(row, name)
                if value:
                    inputs[name] = _resolve(value, base, root, allow_outside, name, check_files)
            source = None
            if row.transcript in RECOGNITION_SOURCES:
                source = row.transcript
            elif row.transcript:
                if Path(row.transcript).suffix.lower() not in (".srt", ".vtt", ".json"):
                    raise ValueError(f"transcript must be one of {', '.join(RECOGNITION_SOURCES)} or an "
                                     f".srt/.vtt/.json file, got '{row.transcript}'")
                inputs["transcript"] = _resolve(row.transcript, base, root, allow_outside, "transcript", check_files)
            dialogue = _resolve(row.dialogue, base, root, allow_outside, "dialogue", check_files) \
                if row.dialogue else None
            jid = _ID_RE.sub("_", _job_id(row, index))[:120] or f"job{index:05d}"
            dialogue_out, dialogue_media = _check_dialogue(dialogue, root, allow_outside) \
                if dialogue is not None and check_files else (None, {})
            if row.output:
                output = _resolve(row.output, base, root, allow_outside, "output", False)
            elif dialogue_out is not None:
                output = dialogue_out           # the dialogue's own output.path
            else:
                output = output_dir / f"{jid}.mp4"
            if output.suffix.lower() not in OUTPUT_SUFFIXES:
                raise ValueError(f"output must be an .mp4 file, got '{output.name}'")
            blocker = _file_in_the_way(output)
            if blocker is not None:             # found now, not as "cannot create the lock file" mid-run
                raise ValueError(f"the output folder {blocker} is a regular file")
            clash = next((k for k, p in {**inputs, **{f"the dialogue's {k}": v for k, v in dialogue_media.items()}}.items()
                          if same_file(p, output)), None)
            if clash is not None:
                raise ValueError(f"the output {output} is also the input {clash}; rendering would overwrite it")
            if output in seen_out:
                raise ValueError(f"same output as the row at line {seen_out[output]}: {output}")
            if jid in seen_id:
                raise ValueError(f"duplicate job id '{jid}' (also at line {seen_id[jid]}); set 'id' to tell them apart")
            seen_out[output] = line
            seen_id[jid] = line
            jobs.append(Job(id=jid, index=index, line=line, output=output, dialogue=dialogue,
                            inputs=inputs, preset=row.preset, seed=row.seed, overrides=dict(row.overrides),
                            transcript=source, dialogue_media=dialogue_media))
        except ValidationError as e:
            invalid.append(RowProblem(line, _pydantic_message(e), index, _row_id(raw, seen_id)))
        except EchoError as e:
            hint = f" ({e.fix})" if (e.fix or "").startswith("did you mean") else ""   # a dialogue's typo hint
            invalid.append(RowProblem(line, f"{e.path + ': ' if e.path else ''}{e.message}{hint}", index,
                                      _row_id(raw, seen_id)))
        except (ValueError, TypeError, OSError, RecursionError) as e:
            invalid.append(RowProblem(line, str(e) or type(e).__name__, index, _row_id(raw, seen_id)))
    # a job may not write what another job reads: that job would render from a video made
    # by the batch (and be recorded as done), and the user's file would be gone
    readers = {Path(p).resolve(): j.id for j in jobs for p in [*j.inputs.values(), *j.dialogue_media.values()]}
    clash = [j for j in jobs if j.output in readers and readers[j.output] != j.id]
    for j in clash:
        invalid.append(RowProblem(j.line, f"its output {j.output} is an input of job {readers[j.output]}; "
                                  "rendering would overwrite it", j.index, j.id))
    if clash:
        jobs = [j for j in jobs if j not in clash]
        invalid.sort(key=lambda p: p.line)
    return Manifest(path=path, root=root, jobs=jobs, invalid=invalid, n_rows=len(raw_rows))


def load_manifest(path: str | Path, *, root: str | Path | None = None, output_dir: str | Path | None = None,
                  allow_outside: bool = False, check_files: bool = True) -> Manifest:
    """Read a manifest file (format from its extension). See `parse_manifest_text`."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SpecError(f"unknown manifest extension '{path.suffix}'", path=path,
                        fix="name it .yaml, .yml, .csv or .jsonl")
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise SpecError("manifest not found", path=path, fix="check the path") from e
    except IsADirectoryError as e:
        raise SpecError("manifest is a folder", path=path, fix="pass the manifest file") from e
    except OSError as e:
        raise SpecError(f"cannot read manifest: {e.strerror}", path=path, fix="check permissions") from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(f"manifest is not UTF-8 text (byte {e.start})", path=path,
                        fix="save the manifest as UTF-8") from e
    if "\x00" in text:
        raise SpecError("manifest contains NUL bytes (is it a binary file?)", path=path,
                        fix="pass a text manifest")
    return parse_manifest_text(text, fmt, path, root=Path(root) if root else None,
                               output_dir=Path(output_dir) if output_dir else None,
                               allow_outside=allow_outside, check_files=check_files)


Format = Literal["yaml", "csv", "jsonl"]
