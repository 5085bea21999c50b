"""Shared CLI state (global options), result output and progress display.

Only light imports here: this module is loaded by `echo-cli --help`.

For command authors:
    from echo_cli.cli.common import state, emit, progress
    st = state()                       # .quiet .verbose .json .no_progress
    with progress(total=n, desc="render") as p:
        p.advance(1)
    emit({"output": "out.mp4"}, human="wrote out.mp4")   # JSON under --json, else the text
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass
class State:
    quiet: bool = False
    verbose: bool = False
    json: bool = False
    no_progress: bool = False
    command: str = ""

    @property
    def verbosity(self) -> int:
        return -1 if self.quiet else 1 if self.verbose else 0


_STATE = State()


def state() -> State:
    return _STATE


def set_state(**kw) -> State:
    for k, v in kw.items():
        setattr(_STATE, k, v)
    return _STATE


def _default(o: Any):
    from pathlib import Path

    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(o)
    return str(o)


def emit(result: dict, human: str | None = None, ok: bool = True) -> None:
    """The command's result: exactly one JSON object on stdout under --json, else `human`.
    ok=False: the command ran to the end but did not succeed (a batch with failed jobs)."""
    st = state()
    if st.json:
        payload = {"ok": bool(ok), "command": st.command, **result}
        sys.stdout.write(json.dumps(payload, default=_default) + "\n")
        sys.stdout.flush()
    elif human is not None:
        print(human)


def emit_error(err_dict: dict, details: dict | None = None) -> None:
    """details: what the command had done when it stopped (a stopped batch's summary)."""
    payload = {"ok": False, "command": state().command, "error": err_dict, **(details or {})}
    sys.stdout.write(json.dumps(payload, default=_default) + "\n")
    sys.stdout.flush()


def use_plain_progress() -> bool:
    """Plain line progress (no escape codes) for logs: not a TTY, NO_COLOR, TERM=dumb."""
    return (not sys.stderr.isatty() or not sys.stdout.isatty() or bool(os.environ.get("NO_COLOR"))
            or os.environ.get("TERM") == "dumb")


class _NullProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, completed: int) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass


class _PlainProgress:
    """`desc: 40/100 (40%) 2.1 it/s` lines on stderr, at most every `every` seconds."""

    def __init__(self, total: int | None, desc: str, every: float = 2.0):
        self.total, self.desc, self.every = total, desc, every
        self.done = 0
        self.t0 = self._last = time.monotonic()

    def set_total(self, total: int | None) -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, completed: int) -> None:
        self.done = completed
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._line()

    def _line(self) -> None:
        rate = self.done / max(time.monotonic() - self.t0, 1e-9)
        if self.total:
            pct = 100.0 * self.done / self.total
            msg = f"{self.desc}: {self.done}/{self.total} ({pct:.0f}%) {rate:.1f}/s"
        else:
            msg = f"{self.desc}: {self.done} {rate:.1f}/s"
        print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        self._line()


class _RichProgress:
    def __init__(self, total: int | None, desc: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self._task = self._p.add_task(desc, total=total)
        self._p.start()

    def set_total(self, total: int | None) -> None:
        self._p.update(self._task, total=total)

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._task, n)

    def update(self, completed: int) -> None:
        self._p.update(self._task, completed=completed)

    def close(self) -> None:
        self._p.stop()


@contextlib.contextmanager
def progress(total: int | None = None, desc: str = "") -> Iterator:
    """Progress display honouring --quiet/--no-progress/--json and TTY/NO_COLOR.

    Yields an object with `.advance(n=1)`, `.update(completed)`, `.set_total(total)`.
    Always writes to stderr, so stdout stays clean for results.
    """
    st = state()
    if st.quiet or st.no_progress:
        yield _NullProgress()
        return
    bar = _PlainProgress(total, desc) if use_plain_progress() else _RichProgress(total, desc)
    try:
        yield bar
    finally:
        bar.close()


def not_built(what: str, issue: str) -> None:
    """For commands whose implementation has not landed yet: a clean one-line error (exit 6)."""
    from echo_cli.errors import DependencyError

    raise DependencyError(f"`echo-cli {what}` is not built yet in this version",
                          fix=f"update echo-cli ({issue})")
