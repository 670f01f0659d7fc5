"""The PR gate on real cold starts (CPU lane): the same code passes, a real slowdown fails.

Two real starts beyond the shared `cpu_lane_results` (tiny-llama baseline): one more of the same code,
gated with --coldstart-compare-to and recorded into asv; and one with `slowdown_probe` merged into
`baseline` (benchmarks/optimizations.toml: a bigger profiling batch, real extra work in memory_profiling),
which is how a PR that makes startup slower looks to the gate. One sample a side, so the ratio rule with
benchmarks/compare.toml's single-sample thresholds decides (docs/explanation/regressions.md); the same code
is UNDECIDED there (one start shows no spread), never regressed. And one short `coldstart gate run`: this
checkout as the base, a head that cannot start (an engine argument vLLM refuses): it stops at regressed after
the first pair (one real start plus one that fails in seconds). The long gate runs (+15 % head, head = base)
are in the docs, not here.
"""

from __future__ import annotations

import json
import shutil
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


def test_same_code_is_never_regressed_and_one_start_a_side_is_undecided(same_code: BenchRun) -> None:
    # One start a side shows no spread: +10 % cannot be ruled out, so the honest answer is UNDECIDED (exit 2).
    assert same_code.returncode == 2, same_code.output[-6000:]
    assert "cold-start comparison: UNDECIDED (exit 2)" in same_code.output
    assert "REGRESSION" not in same_code.output and "Traceback" not in same_code.output
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


def test_same_code_compares_undecided_from_the_cli(cpu_lane_results: BenchRun, same_code: BenchRun,
                                                   tmp_path: Path) -> None:
    md = tmp_path / "aa.md"
    code = main(["compare", str(cpu_lane_results.results_dir), str(same_code.results_dir), "--only-common",
                 "--budgets", "", "--config", str(REPO / "benchmarks" / "compare.toml"), "--markdown", str(md)])
    assert code == 2, md.read_text()
    assert "UNDECIDED" in md.read_text().splitlines()[1]


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


def test_gate_run_stops_at_regressed_when_the_head_cannot_start(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    head = tmp_path / "head"
    shutil.copytree(REPO / "benchmarks", head / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    (head / "pytest_coldstart").symlink_to(REPO / "pytest_coldstart")
    shutil.copy(REPO / "pyproject.toml", head / "pyproject.toml")
    (head / ".coldstart" / "models").mkdir(parents=True)
    (head / ".coldstart" / "models" / "tiny-llama").symlink_to(REPO / ".coldstart" / "models" / "tiny-llama")
    opts = head / "benchmarks" / "optimizations.toml"
    text = opts.read_text()
    marker = '[optimizations.baseline]\ndescription = "all caches cold"\ncache = "cold"\n'
    assert marker in text
    opts.write_text(text.replace(marker, marker + 'engine_args = ["--no-such-engine-arg-for-the-gate-test"]\n'))
    out = tmp_path / "gate"
    proc = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "gate", "run", "--base", str(REPO),
                           "--head", str(head), "--out", str(out), "--budgets", "", "--max-pairs", "3",
                           "--pytest-args", f"--optimization baseline --coldstart-workdir {tmp_path / 'work'} "
                           f"{NO_BUDGETS}"],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "REGRESSED (regressed) after 1 pair(s) judged, 1 started" in proc.stdout
    record = json.loads((out / "gate.json").read_text())
    assert record["state"] == "regressed" and record["pairs_started"] == 1
    rows = {r["metric"]: r for r in record["comparison"]["rows"]}
    assert rows["failed_starts"]["verdict"] == "missing" and "server" in rows["failed_starts"]["reason"]
    assert [p.name for p in (out / "logs").iterdir()] and load_results(out / "runs-base")[0].exit_status == "ok"
    assert "Traceback" not in proc.stdout + proc.stderr
