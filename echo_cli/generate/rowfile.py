"""Per-frame rows kept on disk during the frame loop and read back one chunk at a time.

    rows = RowFile.from_array(matrix, n_frames)     # (n_frames, F) float32 on disk
    inputs = GenerationInputs(audio=rows, n_frames=n_frames, ...)   # engine calls rows(start, stop)
    ...
    rows.close()                                     # the file is gone (also on garbage collection)

Why: the avatar's Whisper encoder features are (frames, 512) float32, 123 KB per second of
video (184 MB for an hour); the generator needs only the rows of the chunk it is making.
Held in memory for the whole frame loop they made peak memory grow with the length
(docs/performance_e2e.md, "## Memory"). The rows go to an anonymous temporary file (deleted
by the OS when closed, even if the process is killed) and each call reads its rows with
plain reads into a fresh array: no memory map, so no page of the file stays counted as the
process's memory between chunks.

Rows are those of the in-memory path exactly (same float32 bytes); frames outside [0, n)
repeat the edge row, as generate.engine does for arrays.
"""
from __future__ import annotations

import errno
import tempfile
import threading
from pathlib import Path

import numpy as np

from echo_cli.errors import InputError, OutputError

_BLOCK_ROWS = 4096       # rows per write: a few MB, so writing never copies the whole matrix


def _spill_dir() -> str | None:
    """The cache root's tmp/ (on disk, unlike a tmpfs /tmp whose files live in RAM); else the default."""
    from echo_cli.hashing import cache_root

    d = Path(cache_root()) / "tmp"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return str(d)
    except OSError:
        return None


def write_temp(f, data) -> None:
    """f.write(data) for the temporary files here: a full disk or a file-size limit is the
    user's to fix (an OutputError, exit 7), not an internal error."""
    try:
        f.write(data)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise OutputError("disk full or file size limit reached while writing a temporary file",
                              path=_spill_dir(),
                              fix="free space in the cache folder (ECHO_CACHE_DIR) or raise the file size limit") from e
        raise


def _temp_file(folder: str | Path | None = None):
    d = str(folder) if folder is not None else _spill_dir()
    try:
        return tempfile.TemporaryFile(prefix="echo-rows-", suffix=".f32", dir=d)
    except OSError:
        return tempfile.TemporaryFile(prefix="echo-rows-", suffix=".f32")


class TempArrayFile:
    """float32 data in an anonymous temporary file, read back with plain reads (thread-safe):
    the base of RowFile and media.wave_file.WaveFile."""

    def __init__(self, f):
        self._f = f
        self._lock = threading.Lock()

    def _read_into(self, offset: int, out: np.ndarray) -> np.ndarray:
        """Fill `out` (contiguous float32) from byte `offset` of the file."""
        view = memoryview(out).cast("B")
        with self._lock:
            if self._f.closed:
                raise ValueError(f"{type(self).__name__} is closed")
            self._f.seek(offset)
            got = 0
            while got < view.nbytes:
                k = self._f.readinto(view[got:])
                if not k:
                    raise OSError(f"temporary file truncated: read {got} of {view.nbytes} bytes")
                got += k
        return out

    def close(self) -> None:
        with self._lock:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RowFile(TempArrayFile):
    """A (n_rows, n_cols) float32 matrix in an anonymous temporary file; call (start, stop) for rows."""

    def __init__(self, f, n_rows: int, n_cols: int):
        super().__init__(f)
        self.n_rows, self.n_cols = int(n_rows), int(n_cols)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_cols

    @classmethod
    def from_array(cls, x: np.ndarray, n_rows: int | None = None, folder: str | Path | None = None) -> "RowFile":
        """x (m, F) -> n_rows rows: x's first n_rows, extended by holding its last row if shorter."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError(f"per-frame rows must be a non-empty (frames, features) array, got shape {x.shape}",
                             fix="give non-empty audio")
        n = x.shape[0] if n_rows is None else int(n_rows)
        f = _temp_file(folder)
        try:
            body = min(n, x.shape[0])
            for i in range(0, body, _BLOCK_ROWS):
                write_temp(f, memoryview(np.ascontiguousarray(x[i:min(i + _BLOCK_ROWS, body)], np.float32)))
            if n > body:
                last = np.ascontiguousarray(x[-1:], np.float32)
                for i in range(body, n, _BLOCK_ROWS):
                    write_temp(f, memoryview(np.repeat(last, min(_BLOCK_ROWS, n - i), 0)))
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(f, n, x.shape[1])

    @classmethod
    def writer(cls, n_cols: int, folder: str | Path | None = None) -> "RowWriter":
        """Rows appended in order (`write(block)`), then `finish()` -> the RowFile: a
        matrix that is never whole in memory (the Whisper rows of an hour-long track)."""
        return RowWriter(_temp_file(folder), int(n_cols))

    def blocks(self, rows: int = _BLOCK_ROWS):
        """The rows in order, `rows` at a time (streaming them into a cache file)."""
        for i in range(0, self.n_rows, rows):
            yield self(i, min(i + rows, self.n_rows))

    def __len__(self) -> int:
        return self.n_rows

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """Rows for frames [start, stop); indices clipped to [0, n_rows) like the engine's array path."""
        start, stop = int(start), int(stop)
        if stop <= start:
            return np.zeros((0, self.n_cols), np.float32)
        idx = np.clip(np.arange(start, stop), 0, self.n_rows - 1)
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        block = self._read_into(lo * self.n_cols * 4, np.empty((hi - lo, self.n_cols), np.float32))
        if lo == start and hi == stop:
            return block
        return block[idx - lo]


class RowWriter:
    """Appends float32 rows to an anonymous temporary file (RowFile.writer)."""

    def __init__(self, f, n_cols: int):
        self._f, self.n_cols, self.n_rows = f, n_cols, 0

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, np.float32)
        if block.ndim != 2 or block.shape[1] != self.n_cols:
            raise ValueError(f"rows of width {self.n_cols} expected, got shape {block.shape}")
        write_temp(self._f, memoryview(block).cast("B"))
        self.n_rows += block.shape[0]

    def write_bytes(self, raw: bytes) -> None:
        """Whole float32 rows as raw bytes (a stream read from a cache file)."""
        if len(raw) % (4 * self.n_cols):
            raise ValueError("partial row")
        write_temp(self._f, raw)
        self.n_rows += len(raw) // (4 * self.n_cols)

    def finish(self) -> RowFile:
        if self.n_rows == 0:
            self._f.close()
            raise InputError("no rows were written", fix="give non-empty audio")
        self._f.flush()
        return RowFile(self._f, self.n_rows, self.n_cols)

    def abort(self) -> None:
        self._f.close()
