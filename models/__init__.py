"""The shipped default bundle, found as package data of the installed ``models`` package.

``models/default.dwb`` stays where a source checkout has always had it, so ``python main.py``,
``scripts/train_default.sh`` and the benchmarks' ``ROOT / "models" / "default.dwb"`` keep working;
``pip install .`` copies it next to this file (pyproject.toml's package-data; guarded by
tests/test_packaging.py).
"""
from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

DEFAULT_BUNDLE_NAME = "default.dwb"

_copies = contextlib.ExitStack()     # temporary copies made for a zipped install, removed at exit
atexit.register(_copies.close)


def default_bundle_path() -> Path:
    """The default bundle as a file on disk: the package's own file, or a temporary copy of it
    when the package lives in a zip archive."""
    res = resources.files(__name__) / DEFAULT_BUNDLE_NAME
    if isinstance(res, Path):
        return res
    return _copies.enter_context(resources.as_file(res))
