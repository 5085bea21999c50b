"""Environment variables that tune the tool (documented in the README), validated where read:
a bad value is a usage error naming the variable, never a crash deep inside a library.
Imports nothing heavy (the CLI checks them at start-up)."""
from __future__ import annotations

from echo_cli.errors import UsageError


def env_threads() -> int:
    """$ECHO_THREADS as a thread count (0: unset); anything but a whole number >= 1 is a
    usage error naming the variable (it crashed deep inside torch or CTranslate2)."""
    import os

    v = os.environ.get("ECHO_THREADS", "").strip()
    if not v:
        return 0
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"environment variable ECHO_THREADS={v!r} is not a whole number >= 1",
                         fix="unset ECHO_THREADS or set it to a thread count such as 2")
    return n
