"""Per-output lock files, so two workers (or two shards, or two runs) never render one output.

`<output>.echo.lock` is created with O_CREAT|O_EXCL (atomic on local filesystems and NFSv3+)
and holds JSON {pid, host, started}. The holder also keeps an `flock` on it for its lifetime:
the kernel drops that lock when the process dies, even by SIGKILL, which is how a stale lock
is told from a live one on the same host without trusting pids (pids are reused). For a
holder on another host (shared filesystem) we cannot see its process: the holder touches the
file every `HEARTBEAT_S` seconds and a lock not touched for `stale_after` seconds is stale.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from echo_cli import log

LOG = log.get("echo_cli.batch.locks")
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def lock_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".echo.lock")


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    started: float

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} since {time.strftime('%H:%M:%S', time.localtime(self.started))}"


def read_lock(path: Path) -> LockInfo | None:
    try:
        d = json.loads(Path(path).read_text())
        return LockInfo(int(d["pid"]), str(d["host"]), float(d["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class LockBusy(Exception):
    """Another live process holds the lock (not an error of the job: it is being rendered)."""

    def __init__(self, path: Path, holder: LockInfo | None):
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.holder = holder


class OutputLock:
    """Context manager: `with OutputLock(out): render(out)`. Raises LockBusy when held elsewhere."""

    def __init__(self, output: str | Path, stale_after: float = STALE_AFTER_S, heartbeat: float = HEARTBEAT_S):
        self.path = lock_path(output)
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- acquisition ---------------------------------------------------------------------
    def acquire(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._break_if_stale():
                    continue
                raise LockBusy(self.path, read_lock(self.path)) from None
            # Blocking is fine: only a prober judging staleness can hold it, and only briefly.
            fcntl.flock(fd, fcntl.LOCK_EX)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
            self._fd = fd
            self._start_heartbeat()
            return self
        raise LockBusy(self.path, read_lock(self.path))

    def _break_if_stale(self) -> bool:
        """Remove the lock file if its holder is gone. True when the caller should retry."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return True                             # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False                    # a live process on this host holds it
                raise
            # We hold the flock: no live local holder. Make sure the path still names the file we
            # locked (another breaker may have replaced it), then judge foreign-host holders.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                return True
            if not same:
                return True
            info = read_lock(self.path)
            if info is not None and info.host != socket.gethostname():
                age = time.time() - os.fstat(fd).st_mtime
                if age < self.stale_after:
                    return False                    # foreign holder still heartbeating
            if info is None:
                # Empty/corrupt file: a holder killed between create and write, or one still
                # writing. Only a file old enough is treated as stale.
                if time.time() - os.fstat(fd).st_mtime < 5.0:
                    return False
            LOG.warning("removing stale lock %s (%s)", self.path, info or "unreadable")
            os.unlink(self.path)
            return True
        finally:
            os.close(fd)

    # -- heartbeat (for holders seen from other hosts) --------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._thread = threading.Thread(target=beat, name="echo-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)                      # drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(output: str | Path) -> bool:
    """True when a live process holds the lock of `output` (does not break stale locks)."""
    path = lock_path(output)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        info = read_lock(path)
        if info is not None and info.host != socket.gethostname():
            return time.time() - os.fstat(fd).st_mtime < STALE_AFTER_S
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
