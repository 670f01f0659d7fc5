"""The history site, end to end: real CPU-lane results -> asv files -> `asv publish` -> `asv preview` ->
headless Chromium renders a phase's graph with the recorded values.

Needs chromium (`make test` installs Debian's where it can; skipped without it, COLDSTART_REQUIRE_CHROMIUM=1
makes that a failure) and, the first time,
npm: asv 0.6.6's pages load jQuery/flot/bootstrap from CDNs this machine cannot reach, so the site is
published self-contained (`coldstart publish --self-contained`, files cached in .coldstart/asv-vendor).
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_coldstart.history import asv_store as asv_export
from pytest_coldstart.history import commits
from pytest_coldstart.history.asv_publish import publish
from pytest_coldstart.history.asv_site import missing
from pytest_coldstart.model.result import load_results

from ..browser import chromium, requires_chromium, stop_group
from ..conftest import REPO, BenchRun

pytest.importorskip("asv")
VENDOR = REPO / ".coldstart" / "asv-vendor"
pytestmark = [
    pytest.mark.integration,
    requires_chromium,
    pytest.mark.skipif(bool(missing(VENDOR)) and shutil.which("npm") is None,
                       reason="npm needed once to fetch asv's JavaScript into .coldstart/asv-vendor"),
]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(cpu_lane_results: BenchRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The CPU lane's real runs recorded at a commit, published, and served by `asv preview`."""
    root = tmp_path_factory.mktemp("asv-site")
    runs = load_results(cpu_lane_results.results_dir)
    assert runs, cpu_lane_results.output[-3000:]
    # A repository of our own: the checkout under test may be detached or shallow (CI), and asv
    # only plots commits on the configured branches.
    repo = root / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    conf = json.loads(_strip_comments((REPO / "asv.conf.json").read_text()))
    conf.update(repo=".", results_dir="results", html_dir="html")
    (repo / "asv.conf.json").write_text(json.dumps(conf, indent=2))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "cold-start history test")
    commit = commits.resolve(repo, "HEAD")
    recorded = asv_export.record(runs, repo / "results", commit)
    html = publish(repo / "asv.conf.json", vendor_dir=VENDOR)
    port = _free_port()
    log = (root / "preview.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "asv", "preview", "--config", str(repo / "asv.conf.json"),
                               "--port", str(port)], cwd=repo, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"asv preview did not answer on {url}: {(root / 'preview.log').read_text()[-2000:]}")
        yield {"url": url, "html": html, "root": root, "runs": runs, "commit": commit, "machine": recorded.machine}
    finally:
        stop_group(server)
        log.close()


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))


def test_graph_data_is_what_was_measured(site: dict) -> None:
    graph_path = f"graphs/branch-main/machine-{site['machine']}/phases.torch_compile.json"
    points = json.loads(urllib.request.urlopen(site["url"] + graph_path, timeout=10).read())
    baseline = [r for r in site["runs"] if r.optimization == "baseline" and r.exit_status == "ok"]
    # asv plots the median of a commit's samples (one sample per cold start).
    measured = statistics.median(p.duration_s for r in baseline for p in r.phases if p.name == "torch_compile")
    values = [v for _, series in points for v in series if v is not None]
    assert pytest.approx(measured) in values, (measured, points)
    index = json.loads(urllib.request.urlopen(site["url"] + "index.json", timeout=10).read())
    assert {index["revision_to_hash"][str(rev)] for rev, _ in points} == {site["commit"].hash}


def test_phase_graph_page_renders_with_data(site: dict) -> None:
    page = site["url"] + "#phases.torch_compile"
    shot = site["root"] / "phases.torch_compile.png"
    result = chromium(site["root"], f"--screenshot={shot}", page)
    assert shot.is_file(), result.stderr[-2000:]
    dom = chromium(site["root"], "--dump-dom", page).stdout
    assert "Can not determine continental origin of swallow" not in dom, "the site's JavaScript did not load"
    assert 'class="flot-base"' in dom, "no plot canvas: the graph did not render"
    assert "phases.torch_compile" in dom and "tiny-llama" in dom and site["machine"] in dom
    ticks = [float(t) for t in _tick_labels(dom)]
    measured = [p.duration_s for r in site["runs"] for p in r.phases if p.name == "torch_compile" and p.duration_s]
    assert ticks and max(ticks) >= max(measured) * 0.9, (ticks, measured)  # the y axis spans the data
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 900)
    plot = image.crop((260, 110, 1360, 770))  # the plot area beside the left panel
    colours = plot.getcolors(maxcolors=1 << 20) or []
    series = sum(n for n, (r, g, b) in colours if b > 150 and r < 120 and b - r > 60)  # flot's blue series
    assert series > 10, f"no plotted series in {shot} ({len(colours)} colours)"


def _tick_labels(dom: str) -> list[str]:
    import re

    return [m for m in re.findall(r'class="flot-tick-label tickLabel"[^>]*>([0-9.]+)<', dom)]
