"""The pages people look at, looked at in a real browser: the HTML report and the docs site.

(The asv history site has its own browser test, tests/integration/test_asv_site.py.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..browser import ink_share, render, requires_chromium, serve
from ..conftest import REPO

pytestmark = requires_chromium
RESULTS = REPO / "tests" / "data" / "results"


def test_html_report_renders_its_tables_and_figures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results_dir = tmp_path / "results"
    shutil.copytree(RESULTS / "cpu-lane", results_dir)
    out = tmp_path / "site" / "report.html"
    done = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "report", str(results_dir), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with serve(out.parent) as url:
        page = render(tmp_path, url + "report.html", "report", size="1400,2400")
    assert "<h1" in page.dom and "tiny-llama" in page.dom
    assert page.dom.count("<img") >= 3 and "data:image/png;base64," in page.dom
    assert ink_share(page.screenshot) > 0.05, f"{page.screenshot} is (nearly) blank"
    # A shared report names no local scratch path (the "how" column once printed them whole).
    assert not re.search(r"in /(tmp|home|root|work)/", page.dom), re.findall(r"in /\S+", page.dom)[:3]


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs")
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    # --strict fails on any warning (a broken link, a page missing from the nav); never add --quiet,
    # which hides the warnings and so lets --strict pass.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return site


def test_docs_site_front_page_renders_with_its_picture(docs_site: Path, tmp_path: Path) -> None:
    with serve(docs_site) as url:
        page = render(tmp_path, url, "index")
    assert "pytest-coldstart" in page.dom and "Getting started" in page.dom and "Reference" in page.dom
    [src] = re.findall(r'<img alt="[^"]*" src="([^"]+waterfall[^"]*)"', page.dom)[:1]
    assert (docs_site / src).is_file(), src
    assert ink_share(page.screenshot) > 0.05, f"{page.screenshot} is (nearly) blank"


def test_docs_reference_is_generated_from_the_code(docs_site: Path, tmp_path: Path) -> None:
    from pytest_coldstart.plugin.options import all_plugin_options

    with serve(docs_site) as url:
        options = render(tmp_path, url + "reference/options/", "options").dom
        cli = render(tmp_path, url + "reference/cli/", "cli").dom
    for o in all_plugin_options():
        assert f"<code>{o.flag}</code>" in options, o.flag
    for command in ("compare", "record", "publish", "timeline", "report"):
        assert f"coldstart {command}" in cli, command
