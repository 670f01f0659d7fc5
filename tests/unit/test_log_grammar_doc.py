"""The grammar reference page is generated from the rules, and the wordings it relies on exist in vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coldstart.logs.grammar import MARKERS, source_fragments
from pytest_coldstart.logs.grammar_doc import BEGIN, END, main, render_tables, splice
from tests.conftest import REPO, requires_vllm

PAGE = REPO / "docs" / "reference" / "log-grammar.md"


def test_reference_page_matches_the_rules() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert splice(page, render_tables()) == page, \
        "docs/reference/log-grammar.md is stale: run python -m pytest_coldstart.logs.grammar_doc " \
        "docs/reference/log-grammar.md"


def test_every_phase_and_marker_wording_is_on_the_page() -> None:
    block = render_tables()
    for marker in MARKERS:
        assert f"`{marker.name}`" in block
        for fragment in marker.fragments:
            assert fragment.replace("|", "\\|") in block


def test_regenerating_rewrites_only_the_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# title\n\n{BEGIN}\nold\n{END}\n\ntail\n", encoding="utf-8")
    assert main([str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# title\n\n" + BEGIN) and text.endswith(END + "\n\ntail\n") and "\nold\n" not in text
    page.write_text("no markers\n", encoding="utf-8")
    assert main([str(page)]) == 2  # says why, changes nothing
    assert page.read_text(encoding="utf-8") == "no markers\n"


@requires_vllm
def test_current_wordings_are_in_the_installed_vllm_source() -> None:
    """What ``coldstart check-vllm --installed`` relies on: each wording the grammar marks as current is in a
    string literal of the pinned vLLM's Python source (read as files, adjacent literals joined as Python joins
    them; nothing imported), looked for the way check-vllm looks."""
    from pytest_coldstart.logs.vllm_source import SourceTree, find_fragments, fragment_table, installed_vllm_dir

    root = installed_vllm_dir()
    assert root is not None
    current = source_fragments(current_only=True)
    wanted = [f for f in fragment_table() if f.fragment in current.get(f.marker, ())]
    assert {f.fragment for f in wanted} == {w for ws in current.values() for w in ws}
    where = find_fragments(SourceTree.locate(root), wanted)
    assert {f.marker: f.fragment for f in wanted if not where[f.fragment]} == {}


@pytest.mark.parametrize("current_only", [False, True])
def test_source_fragments_are_literal_strings(current_only: bool) -> None:
    frags = source_fragments(current_only=current_only)
    assert frags and all(isinstance(f, str) and f for fs in frags.values() for f in fs)
    if current_only:
        assert "model_loaded" in frags and "Loading model weights took %.4f GB" not in frags["model_loaded"]
