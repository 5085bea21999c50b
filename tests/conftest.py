"""Shared fixtures for every test file.

- `shared_data`: Path of the real media (../shared/data or $ECHO_SHARED_DATA); the test is
  skipped, with the reason, when it is absent (e.g. on a user's machine).
- `cache_dir`: a fresh temp folder set as $ECHO_CACHE_DIR for the test.
- `sample_media`: the packaged sample media (samples/make_sample_media.py), made once per
  session into a temp folder; skipped when espeak-ng is missing.
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A runner may start the suite with SIGINT ignored (a background job of a non-interactive
# shell: `cmd &`). Children inherit an ignored signal, the CLI rightly keeps it ignored,
# and the interruption tests would then test nothing; give the children the default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def shared_data_path() -> Path:
    return Path(os.environ.get("ECHO_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    p = shared_data_path()
    if not (p / "clips").is_dir():
        pytest.skip(f"real media not found at {p} (set ECHO_SHARED_DATA or check out ../shared/data)")
    return p


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "echo-cache"
    d.mkdir()
    monkeypatch.setenv("ECHO_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def sample_media(tmp_path_factory) -> dict:
    if not (shutil.which("espeak-ng") or shutil.which("espeak")):
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng; scripts/setup.sh does it)")
    from echo_cli.cli.init import make_sample_media

    return make_sample_media(tmp_path_factory.mktemp("sample") / "media")
