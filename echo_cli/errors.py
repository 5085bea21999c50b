"""Typed errors: each carries the file it concerns, the fix, and a documented exit code.

The CLI prints `EchoError.one_line()` and exits with `exit_code`; nothing else is allowed
to escape to the user as a traceback (see cli/main.py).
"""
from __future__ import annotations

from pathlib import Path


class EchoError(Exception):
    """Base class. Subclasses fix the exit code; the table lives in docs/reliability.md."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.fix = fix

    def one_line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"error: {where}{self.message}{fix}".replace("\n", " ")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "exit_code": self.exit_code, "path": self.path,
                "message": self.message, "fix": self.fix}


class UsageError(EchoError):
    """Bad command-line usage (unknown preset, bad flag value)."""
    exit_code = 2
    kind = "usage"


class SpecError(EchoError):
    """A dialogue.yaml, manifest or preset file that does not validate."""
    exit_code = 3
    kind = "spec"


class InputError(EchoError):
    """Media that cannot be used: missing, unreadable, corrupt, no face, silent, too short."""
    exit_code = 4
    kind = "input"


class ModelError(EchoError):
    """A checkpoint that is missing, truncated, not safetensors, or does not match the code."""
    exit_code = 5
    kind = "model"


class DependencyError(EchoError):
    """A required package, binary or bundled model file is missing."""
    exit_code = 6
    kind = "dependency"


class OutputError(EchoError):
    """The output cannot be written (folder not writable, disk full, locked by another job)."""
    exit_code = 7
    kind = "output"


class PartialFailure(EchoError):
    """A folder or batch run where some items failed while the rest completed."""
    exit_code = 8
    kind = "partial"


class Interrupted(EchoError):
    """SIGINT/SIGTERM: in-flight work was discarded, finished outputs kept."""
    exit_code = 130
    kind = "interrupted"


def all_failed(codes, message: str, *, path=None, fix: str | None = None) -> EchoError:
    """The error for a folder, suite or batch where nothing completed: the failures' own kind
    when they all failed the same way (one bad file is exit 4, not a partial failure), else
    PartialFailure (8)."""
    codes = set(codes)
    by_code = {c.exit_code: c for c in (*EchoError.__subclasses__(), EchoError)}
    cls = by_code.get(codes.pop(), PartialFailure) if len(codes) == 1 else PartialFailure
    return cls(message, path=path, fix=fix)


def from_os_error(e: OSError) -> EchoError | None:
    """The typed error an OSError from deep inside a stage stands for, where its cause and fix
    are clear (a full disk; a cache folder that cannot be written); None otherwise (a bug)."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return OutputError("disk full or file size limit reached", path=e.filename,
                           fix="free space (or point TMPDIR / ECHO_CACHE_DIR at a larger disk) and rerun")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOENT) and e.filename:
        from echo_cli.hashing import cache_root

        root, p = cache_root().absolute(), Path(str(e.filename)).absolute()
        if p == root or root in p.parents or p in root.parents:
            return OutputError(f"the cache folder cannot be written ({e.strerror})", path=root,
                               fix="set ECHO_CACHE_DIR to a writable folder")
    return None


EXIT_CODES = {
    0: "success",
    1: "internal error (a bug: please report it with --verbose output)",
    UsageError.exit_code: "usage error: bad flag or argument",
    SpecError.exit_code: "invalid dialogue.yaml, manifest or preset",
    InputError.exit_code: "unusable input media (missing, corrupt, no face, silent)",
    ModelError.exit_code: "checkpoint missing, corrupt or mismatched",
    DependencyError.exit_code: "missing dependency (package, ffmpeg, bundled model)",
    OutputError.exit_code: "output cannot be written",
    PartialFailure.exit_code: "some items of a folder/batch failed; the rest completed",
    Interrupted.exit_code: "interrupted (SIGINT/SIGTERM); no partial output left",
}
