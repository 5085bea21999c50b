"""Finding and running the ffmpeg binary, always with argument lists (never a shell string).

Lookup order: `$ECHO_FFMPEG` (an explicit path), `ffmpeg` on PATH, else the static binary
that the imageio-ffmpeg wheel ships. imageio-ffmpeg ships no ffprobe, so probing uses PyAV
(see probe.py) and never needs ffprobe.

Every child process gets PR_SET_PDEATHSIG on Linux: if the Python process is killed
(SIGKILL included) ffmpeg dies with it instead of finishing a temp file in the background.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from echo_cli import log
from echo_cli.errors import DependencyError, InputError

logger = log.get("echo_cli.media.ffmpeg")

STDERR_TAIL = 600  # characters of ffmpeg's stderr quoted in an error


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary; DependencyError with the fix when there is none."""
    explicit = os.environ.get("ECHO_FFMPEG")
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise DependencyError("ECHO_FFMPEG does not name an executable file", path=explicit,
                                  fix="unset ECHO_FFMPEG or point it at an ffmpeg binary")
        # an explicit binary is checked once: `/bin/true` would otherwise "decode" every input
        # to nothing and the user's media would be blamed (exit 4)
        try:
            out = subprocess.run([explicit, "-hide_banner", "-version"], capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if not out.startswith("ffmpeg version"):
            raise DependencyError("ECHO_FFMPEG does not answer `-version` like ffmpeg", path=explicit,
                                  fix="unset ECHO_FFMPEG or point it at an ffmpeg binary")
        return explicit
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # ImportError, or imageio-ffmpeg without its binary
        raise DependencyError(f"ffmpeg not found ({e.__class__.__name__}: {e})",
                              fix="apt-get install ffmpeg, or pip install imageio-ffmpeg") from e
    return exe


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True,
                         text=True, check=False).stdout
    first = out.splitlines()[0] if out else ""
    # "ffmpeg version n7.1 Copyright ..." -> "n7.1"
    parts = first.split()
    return parts[2] if len(parts) > 2 and parts[0] == "ffmpeg" else first


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def base_args() -> list[str]:
    """The binary plus the flags every call wants: quiet banner, errors only, no stdin prompts."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


def tail(stderr: bytes | str | None, n: int = STDERR_TAIL) -> str:
    if not stderr:
        return ""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    # the last whole lines that fit (a cut in mid-word reads as garbage), each once, without
    # ffmpeg's "[aac @ 0x55...]" prefixes: the message is for a person, not a debugger
    lines = []
    for line in reversed([ln.strip() for ln in text.strip().splitlines() if ln.strip()]):
        line = re.sub(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+", "", line).strip()
        if not line or line in lines:
            continue
        if lines and sum(len(x) + 3 for x in lines) + len(line) > n:
            break
        lines.append(line)
    out = " | ".join(reversed(lines))
    return out if len(out) <= n else out[-n:].split(" ", 1)[-1]


def run(args: Sequence[str], *, what: str, path: str | Path | None = None,
        error=InputError, fix: str | None = None, stdin: bytes | None = None) -> bytes:
    """Run ffmpeg to completion; return stdout. A failure raises `error` quoting stderr's tail."""
    args = [str(a) for a in args]
    logger.debug("ffmpeg: %s", " ".join(args))
    try:
        proc = subprocess.run(args, input=stdin, capture_output=True, check=False,
                              preexec_fn=_die_with_parent)
    except OSError as e:
        raise DependencyError(f"cannot run ffmpeg: {e}", path=args[0],
                              fix="reinstall imageio-ffmpeg or install ffmpeg") from e
    if proc.returncode != 0:
        raise error(f"ffmpeg failed to {what}: {tail(proc.stderr) or f'exit {proc.returncode}'}",
                    path=path, fix=fix)
    return proc.stdout


def popen(args: Sequence[str], **kw) -> subprocess.Popen:
    """Start a streaming ffmpeg (pipes); the caller owns the process."""
    args = [str(a) for a in args]
    logger.debug("ffmpeg (stream): %s", " ".join(args))
    try:
        return subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)
    except OSError as e:
        raise DependencyError(f"cannot run ffmpeg: {e}", path=args[0],
                              fix="reinstall imageio-ffmpeg or install ffmpeg") from e


def compile_graph(stream) -> list[str]:
    """ffmpeg-python graph -> argument list, with our binary and base flags substituted."""
    import ffmpeg as ffmpeg_python  # ffmpeg-python; only builds argument lists here

    args = ffmpeg_python.compile(stream, cmd="ffmpeg", overwrite_output=False)
    return base_args() + list(args[1:])
