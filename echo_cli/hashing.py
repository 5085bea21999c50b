"""Content hashes and the cache root (L0): one implementation for every cache and job key."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_FILE_HASHES: dict[tuple, str] = {}


def file_sha256(path: str | Path, *, persist: bool = False) -> str:
    """sha256 hex of a file's bytes, memoised per (path, size, mtime, inode): a batch that
    uses one portrait in 30 jobs reads it once, and an edited file is hashed again.

    persist: also memoise it on disk (cache_root()/file-sha256/, same key), for large files
    every process needs the hash of (the 90 MB MiniLM model: ~0.2 s to hash each start).
    """
    p = Path(path)
    key = stat_key(p)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = _disk_memo(p, key) if persist else read_sha256(p)
    return _FILE_HASHES[key]


def stat_key(path: str | Path) -> tuple:
    """(resolved path, size, mtime_ns, inode): what per-file memos key on, so an edited or
    replaced file is read again (file_sha256 here, media.probe.probe)."""
    p = Path(path)
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino


def _disk_memo(path: Path, key: tuple) -> str:
    """The hash of `path` from the on-disk memo of its stat key, else read and recorded
    (atomically; a read-only cache only costs the re-hash)."""
    import json

    stamp = "|".join(map(str, key))
    memo = cache_root() / "file-sha256" / f"{hashlib.sha256(stamp.encode()).hexdigest()[:32]}.json"
    try:
        m = json.loads(memo.read_text())
        if m.get("stamp") == stamp and len(m.get("sha256", "")) == 64:
            return m["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    sha = read_sha256(path)
    try:
        from echo_cli.io_atomic import write_text

        write_text(memo, json.dumps({"stamp": stamp, "sha256": sha}))
    except Exception:    # noqa: BLE001 - read-only or full cache: the hash is still right
        pass
    return sha


def read_sha256(path: str | Path) -> str:
    """sha256 hex of a file's bytes, read now (for verifying cache entries: never memoised)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def keyed(path: str | Path, *extra: object, length: int = 20) -> str:
    """A short cache key: the file's content hash plus settings/versions that change the result."""
    h = hashlib.sha256(file_sha256(path).encode())
    for e in extra:
        h.update(b"\0" + str(e).encode())
    return h.hexdigest()[:length]


def check_cache_writable(probe: bool = False) -> None:
    """The cache folder (or the nearest folder that exists above it) must take writes, else
    OutputError. Without `probe` nothing is created (a dry run writes nothing); with it the
    folder is made and a file written and removed (io_atomic.try_writing: `os.access` allows
    root everything, also where every write is then refused)."""
    from echo_cli.errors import OutputError
    from echo_cli.io_atomic import nearest_existing, try_writing

    root = cache_root().absolute()
    p = nearest_existing(root)
    fix = "set ECHO_CACHE_DIR to a writable folder"
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise OutputError("the cache folder cannot be written" + ("" if p == root else f" (nor created under {p})"),
                          path=root, fix=fix)
    if probe:
        try:
            root.mkdir(parents=True, exist_ok=True)
            try_writing(root)
        except OSError as e:
            raise OutputError(f"the cache folder cannot be written ({e.strerror or e})", path=root, fix=fix) from None


def cache_root() -> Path:
    """$ECHO_CACHE_DIR, else ~/.cache/echo-cli (never inside ../shared, which is read-only in CI)."""
    env = os.environ.get("ECHO_CACHE_DIR")
    # "~/x" (quoted in a job script, so the shell left it) means the home folder, not ./~/x
    return Path(env).expanduser() if env else Path.home() / ".cache" / "echo-cli"
