"""Efficiency on paper: the published H100 numbers against their floors, and the docs' table."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coldstart.cli import main
from pytest_coldstart.logs.timeline import timeline_from_log
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.report.anchors import load_anchors, paper_rows, render

REPO = Path(__file__).resolve().parents[2]
ANCHORS = REPO / "benchmarks" / "h100_anchors.toml"
H100_LOGS = REPO / "tests" / "data" / "ray-serve-llm-h100"  # vendored copy of shared/logs/ray-serve-llm-h100
BEGIN, END = "<!-- coldstart anchors: begin -->\n", "<!-- coldstart anchors: end -->"


# coldstart-anchors.md 3.3: lower bound on weight-load time, 8B TP1 / 70B TP4 / Qwen3-235B TP8 (seconds).
PUBLISHED_FLOORS = {
    "s3_observed": (2.7, 23.5, 78.5),
    "s3_express": (1.6, 14.1, 47.2),
    "ena_100g": (1.3, 11.3, 37.7),
    "nvme_raid0_16": (1.0, 8.8, 29.5),
    "nvme_raid0_29": (0.55, 4.8, 16.0),
    "page_cache_h2d": (0.30, 0.67, 1.11),
}


@pytest.mark.parametrize("floor", sorted(PUBLISHED_FLOORS))
def test_floors_reproduce_the_published_derivation(floor: str) -> None:
    anchors = load_anchors(ANCHORS)
    computed = [anchors.floors[floor].seconds(anchors.models[m]) for m in ("llama-3-8b", "llama-3-70b", "qwen-3-235b")]
    for got, published in zip(computed, PUBLISHED_FLOORS[floor], strict=False):
        digits = 2 if published < 2 else 1
        assert round(got, digits) == pytest.approx(published, abs=0.011 if digits == 2 else 0.051), (floor, computed)


def test_paper_efficiency_rows() -> None:
    rows = {(r.model.name, r.observation.what, r.floor.name): r for r in paper_rows(load_anchors(ANCHORS))}
    sharded = rows[("llama-3-70b", "Run:ai from S3, sharded", "s3_observed")]
    assert sharded.percent_of_floor == pytest.approx(88.5, abs=0.1)  # "already at the S3 ceiling"
    assert sharded.achieved_gbps == pytest.approx(141.09 / 26.5, rel=1e-3)
    # anchors 3.3 (1): loader efficiency against one ENA card is ~42-50 %
    assert rows[("llama-3-70b", "Run:ai from S3, sharded", "ena_100g")].percent_of_floor == pytest.approx(42.6, abs=0.1)
    assert rows[("qwen-3-235b", "Run:ai from S3, sharded", "ena_100g")].percent_of_floor == pytest.approx(49.3, abs=0.1)
    # not sharded: every rank pulls the whole checkpoint, so a quarter of the floor
    assert rows[("llama-3-70b", "Run:ai from S3, not sharded", "s3_observed")].percent_of_floor == \
        pytest.approx(25.8, abs=0.1)
    # anchors 3.3 (3): local bytes, default loader: 15-30x from the page-cache floor
    page = rows[("llama-3-70b", "default loader, local disk / page cache", "page_cache_h2d")]
    assert 100 / 30 < page.percent_of_floor < 100 / 15


@pytest.mark.parametrize(("log", "key", "what"), [
    ("llama70b-s3-runai-sharded.log", "stream_s", "Run:ai from S3, sharded"),
    ("llama70b-s3-runai.log", "stream_s", "Run:ai from S3, not sharded"),
    ("llama70b-base.log", "weights_load_s", "default loader, local disk / page cache"),
    ("llama70b-base.log", "weights_download_s", "HF hub download (baseline)"),
])
def test_observations_agree_with_the_published_logs(log: str, key: str, what: str) -> None:
    if not H100_LOGS.is_dir():
        pytest.skip(f"{H100_LOGS} not present")
    reported = timeline_from_log((H100_LOGS / log).read_text(errors="replace")).reported
    [observation] = [o for o in load_anchors(ANCHORS).observations if o.model == "llama-3-70b" and o.what == what]
    assert observation.seconds == pytest.approx(reported[key], abs=0.15)


def test_docs_carry_the_generated_table() -> None:
    page = (REPO / "docs" / "measurements" / "h100-anchors.md").read_text(encoding="utf-8")
    assert BEGIN in page and END in page, "docs/measurements/h100-anchors.md lost the generated anchors block"
    block = page.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == render(load_anchors(ANCHORS)).strip(), \
        "the docs' table is stale: paste the output of `coldstart anchors` between the markers"


def test_anchors_command_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["anchors", "--data", str(ANCHORS)]) == 0
    out = capsys.readouterr().out
    assert out == render(load_anchors(ANCHORS))
    assert "| Llama-3-70B (TP4) | Run:ai from S3, sharded | 26.5 | 5.32 |" in out


@pytest.mark.parametrize(("text", "message"), [
    ('[models.m]\nweight_gib = 1\n[floors.f]\ngbps = 1\n[[observations]]\nmodel = "x"\nseconds = 1\nfloors = ["f"]',
     "model 'x' is not a"),
    ('[models.m]\nweight_gib = 1\n[floors.f]\ngbps = 1\n[[observations]]\nmodel = "m"\nseconds = 1\nfloors = ["g"]',
     r"floors \['g'\] unknown"),
    ('[models.m]\nweight_gib = -1\n[floors.f]\ngbps = 1\n', "weight_gib = -1; expected a number > 0"),
    ('[models.m]\nweight_gib = 1\n', r"needs \[models.\*\] and \[floors.\*\]"),
    ('[models.m\n', "not valid TOML"),
])
def test_bad_anchor_files_are_refused_with_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_anchors(path)


def test_missing_anchor_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["anchors", "--data", str(tmp_path / "none.toml")]) == 2
    assert "anchors file not found" in capsys.readouterr().err
