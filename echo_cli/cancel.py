"""Process-wide cancellation flag (L0), set by the CLI's SIGINT/SIGTERM handler.

A signal can arrive while a C extension is importing or running; some of them (protobuf's,
MediaPipe's) swallow the KeyboardInterrupt and report a generic failure instead. Code that
turns exceptions into typed errors calls `check()` first, so a cancelled run still unwinds
as an interruption (exit 130), not as a misleading "dependency missing" error.

A Python caller may cancel a render from another thread (`api.render.request_cancel()`):
the render raises `errors.Interrupted` at its next check, and the request ends with the
render it stopped (`clear()`), so the next render starts afresh.
"""
from __future__ import annotations

import threading

_EVENT = threading.Event()
_BY_CALLER = threading.Event()      # set by the API (not by a signal): a typed error, not KeyboardInterrupt


def request(by_caller: bool = False) -> None:
    if by_caller:
        _BY_CALLER.set()
    _EVENT.set()


def clear() -> None:
    _BY_CALLER.clear()
    _EVENT.clear()


_FINISHING = threading.Event()      # the output is in place: a signal now ends nothing worth undoing


def finishing() -> None:
    """The run's output is complete and renamed into place; what is left is bookkeeping. A
    signal from here on lets the run finish (exit 0) rather than report an interruption
    beside a finished file."""
    _FINISHING.set()


def is_finishing() -> bool:
    return _FINISHING.is_set()


def starting() -> None:
    """A new run: its output is not in place yet (signals interrupt it again)."""
    _FINISHING.clear()


def requested() -> bool:
    return _EVENT.is_set()


def check() -> None:
    if _EVENT.is_set():
        if _BY_CALLER.is_set():
            from echo_cli.errors import Interrupted

            raise Interrupted("render cancelled by request_cancel(); no partial output was left",
                              fix="call render() again to run it")
        raise KeyboardInterrupt


def leave_with_parent(parent: int, unwind_s: float | None = None) -> None:
    """A worker process whose parent was killed outright (SIGKILL, the OOM killer) would block
    on its task queue, or finish a job for nobody, holding its models all the while. Poll the
    parent from a daemon thread; when it is gone, leave: at once (unwind_s None), or first as
    a SIGTERM stops this worker (its job unwound, temp files removed, locks released), then
    for good after unwind_s seconds if native code did not let it."""
    import os
    import signal
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        if unwind_s is not None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(unwind_s)
        os._exit(1)

    threading.Thread(target=watch, name="echo-parent-watch", daemon=True).start()
