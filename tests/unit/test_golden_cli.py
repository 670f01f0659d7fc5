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
