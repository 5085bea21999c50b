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


def same_file(a: str | Path, b: str | Path) -> bool:
    """Would writing `a` replace `b`? The same path after resolving links and `..`, or (both
    existing) the same inode: the check before an output is allowed to be written."""
    a, b = Path(a), Path(b)
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except (OSError, RuntimeError):     # RuntimeError: a symlink loop (Python < 3.13)
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))


def nearest_existing(path: str | Path) -> Path:
    """`path`, or the closest folder above it that is there (a dangling link counts as there:
    it is what a later mkdir would trip on)."""
    path = Path(path)
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def try_writing(folder: str | Path) -> None:
    """Create and remove a hidden file in `folder`; OSError when the filesystem refuses.
    `os.access` answers yes to root on a pseudo-filesystem, or on a network share that
    squashes root and then refuses every write: only writing tells."""
    fd, name = tempfile.mkstemp(prefix=".echo-write-test-", dir=folder)
    os.close(fd)
    os.unlink(name)


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
        # again: some writers replace the file they are given (safetensors' save_file
        # leaves a 0600 file), and a checkpoint or cache entry is a shared file too
        os.chmod(tmp, 0o666 & ~_UMASK)
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


def write_npz(path: str | Path, arrays: dict, streamed: dict | None = None) -> None:
    """Arrays -> .npz at `path`, atomically (every cache and checkpoint-side array file).

    streamed: name -> a float32 row source with `shape` and `blocks()` (generate.rowfile.RowFile),
    written block by block, never whole in memory; np.load reads it back as an ordinary
    member (same .npy layout np.savez writes)."""
    import zipfile

    import numpy as np

    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            if not streamed:
                np.savez(f, **arrays)
                return
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, value in arrays.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as m:
                        np.lib.format.write_array(m, np.asanyarray(value), allow_pickle=False)
                for name, rows in streamed.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as m:
                        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                                  "fortran_order": False, "shape": tuple(int(x) for x in rows.shape)}
                        np.lib.format.write_array_header_2_0(m, header)
                        for block in rows.blocks():
                            m.write(np.ascontiguousarray(block, "<f4").tobytes())


def read_npz_rows(path: str | Path, name: str, block_bytes: int = 4 << 20):
    """Member `name` of an .npz, a (rows, cols) float32 matrix, copied block by block into a
    RowFile (generate.rowfile): the matrix is never whole in memory. None if absent."""
    import zipfile

    import numpy as np

    from echo_cli.generate.rowfile import RowFile

    with zipfile.ZipFile(path) as zf:
        if name + ".npy" not in zf.namelist():
            return None
        with zf.open(name + ".npy") as m:
            version = np.lib.format.read_magic(m)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"{name}: .npy format {version} not supported")
            shape, fortran, dtype = read(m)
            if len(shape) != 2 or fortran or dtype != np.dtype("<f4"):
                raise ValueError(f"{name}: not a C-ordered float32 matrix ({dtype}, {shape})")
            w = RowFile.writer(shape[1])
            try:
                left = shape[0] * shape[1] * 4
                step = max(1, block_bytes // (4 * shape[1])) * 4 * shape[1]
                while left > 0:
                    raw = m.read(min(step, left))
                    if not raw or len(raw) % (4 * shape[1]):
                        raise ValueError(f"{name}: truncated")
                    w.write_bytes(raw)
                    left -= len(raw)
                return w.finish()
            except BaseException:
                w.abort()
                raise
