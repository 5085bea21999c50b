"""Atomic file writes: a temporary sibling, fsync, rename. A killed process leaves no partial file."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from echo_cli.errors import OutputError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def temp_sibling(path: Path, suffix: str | None = None) -> Path:
    """A hidden temp name in the same folder (same filesystem, so rename is atomic).

    The suffix is kept so tools that pick a format by extension (ffmpeg) still work.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; outputs are shared files, so give them the usual umask mode
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path to write; on success it is renamed to `path`, on failure removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path, suffix)
    except OSError as e:
        raise OutputError(f"cannot write here: {e.strerror}", path=path.parent,
                          fix="choose a writable output folder") from e
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise OutputError("disk full or file size limit reached", path=path,
                              fix="free space or raise the file size limit") from e
        raise OutputError(f"cannot write output: {e.strerror or e}", path=path,
                          fix="check permissions and free space") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_npz(path: str | Path, arrays: dict) -> None:
    """Arrays -> .npz at `path`, atomically (every cache and checkpoint-side array file)."""
    import numpy as np

    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
