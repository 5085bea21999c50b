"""Process-wide cancellation flag (L0), set by the CLI's SIGINT/SIGTERM handler.

A signal can arrive while a C extension is importing or running; some of them (protobuf's,
MediaPipe's) swallow the KeyboardInterrupt and report a generic failure instead. Code that
turns exceptions into typed errors calls `check()` first, so a cancelled run still unwinds
as an interruption (exit 130), not as a misleading "dependency missing" error.
"""
from __future__ import annotations

import threading

_EVENT = threading.Event()


def request() -> None:
    _EVENT.set()


def requested() -> bool:
    return _EVENT.is_set()


def check() -> None:
    if _EVENT.is_set():
        raise KeyboardInterrupt
