"""`coldstart report RESULTS_DIR --out report.html`: on golden results, and on the real CPU lane."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from pytest_coldstart.model.efficiency import BASIS_TRANSFER, FLOOR_PROBE, SCOPE_TRANSFER
from pytest_coldstart.model.result import load_results
from pytest_coldstart.report.efficiency import efficiency_markdown
from pytest_coldstart.report.html import build_report

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "data" / "results"
PNG = b"\x89PNG\r\n\x1a\n"


def coldstart(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def images(page: str) -> list[str]:
    return re.findall(r'<img alt="[^"]*" src="([^"]{0,40})', page)


def test_report_of_golden_results(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    shutil.copytree(RESULTS / "cpu-lane", results_dir)
    for path in (RESULTS / "h100-llama70b" / "runs").glob("*.json"):
        shutil.copy(path, results_dir / "runs")
    out = tmp_path / "out" / "report.html"
    proc = coldstart("report", str(results_dir), "--out", str(out), "--markdown", str(tmp_path / "eff.md"))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out} (8 runs, 11 figures" in proc.stdout
    page = out.read_text(encoding="utf-8")
    # self-contained: every image inline, nothing fetched from anywhere
    srcs = images(page)
    assert len(srcs) == 11 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page
    pngs = sorted((tmp_path / "out" / "report-figures").glob("*.png"))
    assert len(pngs) == 11 and all(p.read_bytes()[:8] == PNG for p in pngs)
    assert sum(p.name.endswith("_waterfall.png") for p in pngs) == 8
    assert {p.name for p in pngs} >= {"efficiency.png", "tiny-llama_comparison.png", "llama-3-70b_comparison.png"}
    # efficiency in words, per run and per group; the on-paper section from the repo's anchors file
    assert "load at 5.33 GB/s = 88.7% of floor 6.01 GB/s (source: configured)" in page
    assert "% of floor</th>" in page and "(probe)" in page
    assert "Published H100 load times against the floor" in page
    # the failed run is there, with its error, and the secret-looking assignment in it is masked
    assert "FAILED (server_exited), last phase config" in page
    assert "not enough memory for the KV cache" in page
    assert "s3cr3t-value-123" not in page and "AWS_SECRET_ACCESS_KEY=*** leaked here" in page
    markdown = (tmp_path / "eff.md").read_text()
    assert markdown.startswith(efficiency_markdown(load_results(results_dir)))
    # vllm and ray-serve runs: the cross-system table follows (one row per launcher x optimization)
    assert "## Cold start across systems" in markdown and "ray-serve" in markdown.split("across systems")[1]


def test_report_masks_secrets_of_the_machine_building_it(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    proc = coldstart("report", str(RESULTS / "cpu-lane"), "--out", str(out),
                     env={"HF_TOKEN": "not enough memory for the KV"})
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "not enough memory for the KV" not in page and "RuntimeError: *** cache" in page


def test_report_of_results_without_efficiency(tmp_path: Path) -> None:
    info = build_report(RESULTS / "pre-efficiency", tmp_path / "r.html")
    page = info.path.read_text()
    assert "not recorded" in page and "written before it existed" in page
    assert len(info.figures) == 2  # comparison + waterfall; no efficiency chart without data


def test_report_refuses_empty_and_corrupt_input_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    proc = coldstart("report", str(tmp_path / "nothing"), "--out", str(out))
    assert proc.returncode == 2 and "no runs under" in proc.stderr and "run the benchmarks first" in proc.stderr
    bad = tmp_path / "bad"
    shutil.copytree(RESULTS / "cpu-lane", bad)
    (bad / "runs" / "zzz.json").write_text("{not json")
    proc = coldstart("report", str(bad), "--out", str(out))
    assert proc.returncode == 2 and "zzz.json" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.integration
def test_report_after_a_real_cpu_lane_bench(cpu_lane_results, tmp_path: Path) -> None:
    """The issue's "done when": after a CPU-lane bench, the report, the summary and the JSON carry efficiency."""
    assert cpu_lane_results.returncode == 0, cpu_lane_results.output[-3000:]
    results = load_results(cpu_lane_results.results_dir)
    assert {r.optimization for r in results} == {"baseline", "compile_cache"}
    for result in results:
        eff = result.efficiency
        assert eff is not None and eff.floor_source == FLOOR_PROBE and eff.weight_bytes == 1685112
        # One phase, one meaning (issue 19): vLLM reports the transfer ("Loading weights took"), so the
        # efficiency is on the transfer alone, not on weights_load (which also builds the model).
        assert eff.load_basis == BASIS_TRANSFER and eff.load_scope == SCOPE_TRANSFER
        assert eff.load_s == result.reported["weights_load_s"] < result.phase_durations()["weights_load"]
        assert eff.percent_of_floor > 0
        # No GPU here: the host->GPU floor is a reason, never a number; the weights were evicted before the start.
        assert eff.host_to_gpu is None and eff.host_to_gpu_note == "no CUDA device (not probed)"
        assert eff.resident_share is not None and eff.resident_share <= 0.05
        raw = json.loads(next(p for p in (cpu_lane_results.results_dir / "runs").glob("*.json")
                              if result.started_at in p.read_text()).read_text())
        assert raw["schema_version"] == 1 and raw["efficiency"]["percent_of_floor"] is not None
    summary_lines = [line for line in cpu_lane_results.output.splitlines() if "load at" in line]
    assert len(summary_lines) == 2 and all("% of floor" in line and "(source: probe)" in line for line in summary_lines)
    assert all(line.endswith("; host->GPU floor: no CUDA device (not probed)") for line in summary_lines)

    out = tmp_path / "report.html"
    proc = coldstart("report", str(cpu_lane_results.results_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert len(images(page)) == 4  # efficiency chart, comparison, two waterfalls
    for result in results:
        assert result.efficiency.describe().split(";")[0] in page
    assert "| tiny-llama | compile_cache | vllm |" in efficiency_markdown(results)


def test_report_tables_follow_the_launchers_phases(tmp_path: Path) -> None:
    from dataclasses import replace

    from pytest_coldstart.logs.timeline import Phase
    from pytest_coldstart.model.result import write_result

    base = next(r for r in load_results(RESULTS / "cpu-lane") if r.exit_status == "ok")
    ray = replace(base, launcher="ray-serve", total_ready_s=9.0, unaccounted_s=0.0,
                  phases=(Phase("replica_scheduling", 0.0, 4.0, 4.0, "arrival"),
                          Phase("replica_init", 4.0, 9.0, 5.0, "arrival")))
    write_result(tmp_path / "results", ray)
    info = build_report(tmp_path / "results", tmp_path / "r.html")
    page = info.path.read_text()
    assert "<td>replica_scheduling</td><td class=n>4.00</td>" in page
    assert "<td>imports</td>" not in page  # no rows for phases this launcher does not have
