"""The layout holds: imports flow one way, nothing reaches into another module's privates.

The layer contract itself is import-linter's (``[tool.importlinter]`` in
pyproject.toml, run here and by ``make test``); this file adds what it cannot
see: private names used across modules, and the size of the top level.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "pytest_coldstart"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _private_reach_ins(path: Path) -> list[str]:
    """``from pytest_coldstart.x import _name`` and ``imported._name`` in *path*."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    imported: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_coldstart"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                imported.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pytest_coldstart"):
                    imported.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_access_across_modules(path: Path) -> None:
    assert _private_reach_ins(path) == []


def test_the_checker_sees_a_reach_in(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from pytest_coldstart.history import commits\n"
                   "from pytest_coldstart.measure.runner import _hidden\n"
                   "commits._git('.')\n")
    assert len(_private_reach_ins(bad)) == 2


def test_top_level_stays_small() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert layers == {"model", "logs", "launch", "optimize", "measure", "history", "report", "plugin", "cli"}


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists() and shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (the dev extra has it): pip install -e .[dev]")
    out = subprocess.run([str(exe) if exe.exists() else "lint-imports"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "0 broken" in out.stdout


def test_no_pytest_import_in_the_core() -> None:
    """Also held by import-linter; spelled out here because it is the rule users rely on."""
    for path in _modules():
        if path.is_relative_to(PACKAGE / "plugin"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"pytest", "_pytest"}, path


def test_public_api_is_importable_from_the_package() -> None:
    import pytest_coldstart as pc

    for name in pc.__all__:
        assert getattr(pc, name) is not None, name
    assert pc.Result is pc.RunResult and issubclass(pc.ServerExitedError, pc.LaunchError)
    assert issubclass(pc.LaunchError, pc.ColdstartError) and pc.ExitStatus.OK == "ok"


def test_no_import_cycle_even_inside_a_layer() -> None:
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the dev extra)")
    graph = grimp.build_graph("pytest_coldstart")
    cycles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                     for imported in graph.find_modules_directly_imported_by(module)
                     if imported.startswith("pytest_coldstart")
                     and graph.find_shortest_chain(importer=imported, imported=module)})
    assert cycles == []
