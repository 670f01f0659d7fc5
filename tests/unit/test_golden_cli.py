"""The command line and the asv history give the same bytes for the same input as before the layout change.

The golden files in tests/data/golden/cli were written by the code at commit
2138251 (before the modules moved into subpackages) with ``python -m
tests.golden_cli``; regenerate them only for a deliberate change of output,
and say so in the commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.golden_cli import COMMANDS, generate

GOLDEN = DATA / "golden" / "cli"


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("golden-cli")
    generate(out)
    return out


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_same_outputs_exist(produced: Path) -> None:
    assert _files(produced) == _files(GOLDEN)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_output_and_exit_code_unchanged(produced: Path, name: str) -> None:
    for suffix in (".out", ".rc"):
        assert (produced / f"{name}{suffix}").read_text() == (GOLDEN / f"{name}{suffix}").read_text(), name + suffix


def test_compare_markdown_and_asv_files_unchanged(produced: Path) -> None:
    for rel in ["compare-noise-study.md", "record.rc", *(_f for _f in _files(GOLDEN) if _f.startswith("asv/"))]:
        assert (produced / rel).read_text() == (GOLDEN / rel).read_text(), rel


RESULT_FILES = sorted((DATA / "results").rglob("runs/*.json")) + sorted((DATA / "compare" / "runs").glob("*.json"))


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_result_files_read_and_write_back_unchanged(path: Path) -> None:
    """Schema 1 as written before the layout: reading a result and writing it again gives the same JSON."""
    import json

    from pytest_coldstart.model.result import load_result

    on_disk = json.loads(path.read_text(encoding="utf-8"))
    on_disk.setdefault("efficiency", None)  # files from before efficiency existed read as "not recorded"
    assert load_result(path).to_dict() == on_disk
