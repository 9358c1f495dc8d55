"""Imports only go down (DESIGN.md, "Layout"): core imports nothing from realtime, gui or
training; training nothing from realtime or gui; realtime nothing from gui. Read from the
source (an AST walk), so an import inside a function counts as much as one at the top."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "realtime", "gui", "training")
FORBIDDEN = {"core": {"realtime", "gui", "training"}, "training": {"realtime", "gui"},
             "realtime": {"gui"}, "gui": set()}


def imported_packages(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the file at ``path`` below the
    top-level package folder ``package_dir``; relative imports resolve against it."""
    package = package_dir.name
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append((node.lineno, (node.module or "").split(".")[0]))
            else:
                # from . / from .. inside a top-level package: stays in it, or climbs to the root
                depth = len(path.relative_to(package_dir).parts) - 1        # folders below the package
                if node.level - 1 <= depth:
                    out.append((node.lineno, package))
                elif node.module:
                    out.append((node.lineno, node.module.split(".")[0]))
    return out


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for line, imported in imported_packages(path, root / package):
                if imported in FORBIDDEN[package]:
                    found.append(f"{path.relative_to(root)}:{line} imports {imported}")
    return found


def test_imports_only_go_down():
    assert violations() == []


@pytest.mark.parametrize("package,source,bad", [
    ("training", "from realtime.sources import TokenSource\n", True),
    ("training", "def f():\n    import gui.app\n", True),
    ("core", "from training import metrics\n", True),
    ("core", "from . import realtime\n", False),          # core/realtime.py would be core's own module
    ("realtime", "import gui\n", True),
    ("realtime", "from core.bundle import load_bundle\nfrom .params import ControlBus\n", False),
    ("gui", "from realtime.engine import Engine\nimport core\n", False),
])
def test_the_walk_finds_an_upward_import(tmp_path, package, source, bad):
    (tmp_path / package).mkdir()
    (tmp_path / package / "module.py").write_text(source)
    for other in PACKAGES:
        (tmp_path / other).mkdir(exist_ok=True)
    found = violations(tmp_path)
    assert bool(found) == bad, found
