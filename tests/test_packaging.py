"""pyproject.toml against requirements*.txt, and the default bundle as package data.

No installs here: scripts/check_install.sh (run by .ci/run) installs into a fresh virtual
environment and runs the ``driftwave`` command from another directory.
"""
import re
import tomllib
from pathlib import Path

import main
import models

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_lines(path: Path) -> list[str]:
    """The requirements of a pip requirements file, comments, blanks and ``-r`` includes left out."""
    out = []
    for line in path.read_text().splitlines():
        line = re.sub(r"\s+#.*$|^#.*$", "", line).strip()
        if line and not line.startswith("-"):
            out.append(re.sub(r"\s+", "", line))
    return out


def test_dependencies_equal_requirements_txt():
    assert PYPROJECT["project"]["dependencies"] == requirement_lines(ROOT / "requirements.txt")


def test_dev_extra_equals_requirements_dev_txt():
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text()
    assert PYPROJECT["project"]["optional-dependencies"]["dev"] == requirement_lines(ROOT / "requirements-dev.txt")


def test_torch_pinned_exactly():
    """An unpinned torch makes pip fetch the newest CUDA build (several GB)."""
    assert "torch==2.13.0" in PYPROJECT["project"]["dependencies"]


def test_console_script_is_main_main():
    assert PYPROJECT["project"]["scripts"] == {"driftwave": "main:main"}
    assert callable(main.main)


def test_default_bundle_is_package_data():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert "default.dwb" in setuptools["package-data"]["models"]
    assert "models" in setuptools["packages"]["find"]["include"]
    assert models.default_bundle_path() == ROOT / "models" / "default.dwb"
    assert main.DEFAULT_BUNDLE == models.default_bundle_path() and main.DEFAULT_BUNDLE.is_file()


def test_installed_packages_are_the_top_level_layout():
    """core/, realtime/, gui/, training/, models/ and main.py; never tests/ or benchmarks/."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {p.split(".")[0] for p in include}
    assert tops == {"core", "realtime", "gui", "training", "models"}
    assert all((ROOT / t / "__init__.py").is_file() for t in tops)
    assert PYPROJECT["tool"]["setuptools"]["py-modules"] == ["main"]
