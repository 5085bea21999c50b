"""A wheel install (`pip install .`, a render farm's image) must carry every file the code
reads at run time: such files live inside the package and are listed as package data.
(Presets once lived beside the package: a wheel install refused every render, "unknown
preset 'default'".)"""
from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

import echo_cli
from echo_cli.config import PRESET_DIR, preset_names

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(echo_cli.__file__).resolve().parent


def _package_data() -> list[str]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    return cfg["tool"]["setuptools"]["package-data"]["echo_cli"]


def test_every_non_python_file_of_the_package_is_package_data():
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "echo_cli"], capture_output=True, text=True,
                             check=True).stdout.split()
    data = [Path(f).relative_to("echo_cli").as_posix() for f in tracked if not f.endswith(".py")]
    assert data, "no data files found: is this a git checkout?"
    patterns = _package_data()
    missing = [f for f in data if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_run_time_resources_live_inside_the_package():
    assert PRESET_DIR.resolve().is_relative_to(PACKAGE)
    assert {"default", "draft", "quality"} <= set(preset_names())
    from echo_cli.api.render import default_checkpoint
    from echo_cli.motion.space import DEFAULT_PATH

    for p in (default_checkpoint(), DEFAULT_PATH):
        assert Path(p).resolve().is_relative_to(PACKAGE) and Path(p).is_file()
