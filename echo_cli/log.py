"""Logging set-up: named loggers `echo_cli.<module>`, always on stderr.

stdout is reserved for results (and the single JSON summary under --json).
"""
from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False


def setup(verbosity: int = 0) -> None:
    """verbosity: -1 quiet (errors only), 0 info, 1+ debug."""
    global _CONFIGURED
    level = logging.ERROR if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    root = logging.getLogger("echo_cli")
    root.setLevel(level)
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
        _CONFIGURED = True


def get(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("echo_cli") else f"echo_cli.{name}")


def plain_progress() -> bool:
    """Render-farm logs want line progress without escape codes."""
    return not sys.stdout.isatty() or bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
