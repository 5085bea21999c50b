"""Logging set-up: named loggers `echo_cli.<module>`, always on stderr.

stdout is reserved for results (and the single JSON summary under --json).
"""
from __future__ import annotations

import logging
import os
import re
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


def quiet_third_party() -> None:
    """MediaPipe/TFLite (glog, absl) and protobuf chatter hides our one-line errors; mute it
    unless --verbose (the CLI, and batch workers of a CLI that is not verbose). Environment
    variables must be set before those libraries load."""
    import warnings

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    noisy = r"(google\.protobuf|pyannote|speechbrain|torchaudio|lightning|pytorch_lightning|whisperx|transformers)(\..*)?"
    for category in (UserWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=noisy)


def get(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("echo_cli") else f"echo_cli.{name}")


def plain_progress() -> bool:
    """Render-farm logs want line progress without escape codes."""
    return not sys.stdout.isatty() or bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"



# C++ start-up chatter of MediaPipe's TFLite interpreters (absl/glog lines before
# absl::InitializeLog, the XNNPACK banner); they come from graph threads at moments Python
# does not see, so they are filtered where they land, on file descriptor 2.
NATIVE_NOISE = re.compile(rb"^(?:[WI]0000 \d\d:\d\d:|INFO: Created TensorFlow Lite |"
                          rb"WARNING: All log messages before absl::InitializeLog)")
_FILTER: dict = {}


def filter_native_stderr() -> None:
    """For a CLI process (not --verbose): fd 2 becomes a pipe that a thread copies to the
    real stderr minus NATIVE_NOISE lines; Python's own sys.stderr writes to the real stderr
    directly (so a terminal stays a terminal for the progress bar, and nothing of ours waits
    on the thread). Undone at exit."""
    import atexit
    import threading

    if _FILTER:
        return
    sys.stderr.flush()
    real = os.dup(2)
    r, w = os.pipe()
    os.dup2(w, 2)
    os.close(w)
    sys.stderr = open(real, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                      errors="backslashreplace", closefd=False)

    def pump() -> None:
        rest = b""
        with open(r, "rb", buffering=0) as src:
            while True:
                chunk = src.read(65536)
                if not chunk:
                    break
                *lines, rest = (rest + chunk).split(b"\n")
                keep = b"".join(ln + b"\n" for ln in lines if not NATIVE_NOISE.match(ln))
                if keep:
                    os.write(real, keep)
        if rest and not NATIVE_NOISE.match(rest):
            os.write(real, rest)

    thread = threading.Thread(target=pump, name="echo-stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real, 2)            # drops this process's write end: the pump sees EOF
        thread.join(timeout=1.0)    # (a child still holding one just keeps it open)

    atexit.register(restore)
    _FILTER.update(real=real, thread=thread)
