"""The PR gate on real cold starts (CPU lane): the same code passes, a real slowdown fails.

Two real starts beyond the shared `cpu_lane_results` (tiny-llama baseline): one more of the same code,
gated with --coldstart-compare-to and recorded into asv; and one with `slowdown_probe` merged into
`baseline` (benchmarks/optimizations.toml: a bigger profiling batch, real extra work in memory_profiling),
which is how a PR that makes startup slower looks to the gate. One sample a side, so the ratio rule with
benchmarks/compare.toml's single-sample thresholds decides (README, "How regressions are decided").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_coldstart.cli import main
from pytest_coldstart.history.noise import slowed_registry
from pytest_coldstart.model.result import load_results
from tests.conftest import REPO, BenchRun, requires_vllm, run_bench

pytestmark = [pytest.mark.integration, requires_vllm]
pytest.importorskip("asv")
pytest.importorskip("scipy")
# The gate is judged here, not the budgets (the budget tests live in test_vllm_cpu.py).
NO_BUDGETS = "--coldstart-budgets="  # empty: no budgets (a named file that does not exist is an error)
SLOWED_PHASE = "memory_profiling"


@pytest.fixture(scope="module")
def same_code(cpu_lane_results: BenchRun, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    out = tmp_path_factory.mktemp("gate-aa")
    return run_bench(out / "results", "--model=tiny-llama", "--optimization=baseline", NO_BUDGETS,
                     f"--coldstart-compare-to={cpu_lane_results.results_dir}", f"--coldstart-asv={out / 'asv'}",
                     "--coldstart-machine=cpu-lane-test")


@pytest.fixture(scope="module")
def slowed(cpu_lane_results: BenchRun, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    out = tmp_path_factory.mktemp("gate-slowed")
    registry = slowed_registry(REPO / "benchmarks", out / "registry")
    return run_bench(out / "results", "--model=tiny-llama", "--optimization=baseline", NO_BUDGETS,
                     f"--coldstart-registry={registry}", f"--coldstart-compare-to={cpu_lane_results.results_dir}")


def test_same_code_passes_the_gate(same_code: BenchRun) -> None:
    assert same_code.returncode == 0, same_code.output[-6000:]
    assert "cold-start comparison: OK (exit 0)" in same_code.output
    assert "compile_cache / vllm: in the base but never run in the head" in same_code.output  # noted, not failed


def test_same_code_is_recorded_in_asv(same_code: BenchRun) -> None:
    assert "asv: recorded 1 run(s)" in same_code.output, same_code.output[-3000:]
    asv_dir = same_code.results_dir.parent / "asv"
    files = list((asv_dir / "cpu-lane-test").glob("*-coldstart.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    column = data["result_columns"].index("samples")
    run = load_results(same_code.results_dir)[0]
    assert data["results"]["totals.total_ready_s"][column] == [[run.total_ready_s]]


def test_same_code_compares_unchanged_from_the_cli(cpu_lane_results: BenchRun, same_code: BenchRun,
                                                   tmp_path: Path) -> None:
    md = tmp_path / "aa.md"
    code = main(["compare", str(cpu_lane_results.results_dir), str(same_code.results_dir), "--only-common",
                 "--budgets", "", "--config", str(REPO / "benchmarks" / "compare.toml"), "--markdown", str(md)])
    assert code == 0, md.read_text()
    assert "no regression" in md.read_text().splitlines()[1]


def test_slowdown_fails_the_gate_and_names_the_phase(cpu_lane_results: BenchRun, slowed: BenchRun,
                                                     tmp_path: Path) -> None:
    runs = load_results(slowed.results_dir)
    assert runs and runs[0].exit_status == "ok", slowed.output[-6000:]
    assert "--max-num-batched-tokens" in runs[0].server_argv  # the setting really reached vLLM
    assert slowed.returncode == 1, slowed.output[-6000:]
    assert "REGRESSION (exit 1)" in slowed.output and "Traceback" not in slowed.output
    md = tmp_path / "slowed.md"
    code = main(["compare", str(cpu_lane_results.results_dir), str(slowed.results_dir), "--only-common",
                 "--budgets", "", "--config", str(REPO / "benchmarks" / "compare.toml"), "--markdown", str(md)])
    text = md.read_text()
    assert code == 1, text
    assert SLOWED_PHASE in text.splitlines()[1], text  # the title names the slowed phase
    row = next(line for line in text.splitlines() if line.startswith(f"| {SLOWED_PHASE} |"))
    assert "regressed" in row
