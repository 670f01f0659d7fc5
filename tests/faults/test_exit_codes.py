"""Exit codes with one meaning each: 0 no regression, 1 regression, 2 could not decide. No traceback, ever.

Each row of the README's fault table (section "Faults and what you see") that a CLI command shows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.faults.conftest import CPU_LANE, baseline_runs, coldstart, copy_cpu_lane

pytest.importorskip("scipy")


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize(("field", "value", "says"), [
    ("total_ready_s", "abc", "field 'total_ready_s': 'abc' is not a number"),
    ("environment", [], "field 'environment': expected an object"),
    ("ttft_s", float("nan"), "field 'ttft_s': nan is not finite"),
    ("exit_status", "exploded", "field 'exit_status': 'exploded' is not one of"),
])
def test_a_malformed_results_file_is_exit_2_naming_file_and_field(tmp_path: Path, field: str, value: object,
                                                                  says: str) -> None:
    head = copy_cpu_lane(tmp_path / "head")
    victim = sorted((head / "runs").glob("*.json"))[0]
    data = json.loads(victim.read_text())
    data[field] = value
    victim.write_text(json.dumps(data))  # json writes NaN as NaN, as a hand edit or a buggy writer would
    out = coldstart("compare", str(CPU_LANE), str(head), "--budgets", "")
    assert out.returncode == 2, out
    text = " ".join((out.stdout + out.stderr).split())  # the table wraps long lines
    assert f"{victim.name}: {says}" in text, out  # the file and the field, in one message
    _no_traceback(out.stdout, out.stderr)


def test_a_nan_phase_in_report_is_exit_2_not_a_crash(tmp_path: Path) -> None:
    results = copy_cpu_lane(tmp_path / "results")
    victim = sorted((results / "runs").glob("*.json"))[-1]
    data = json.loads(victim.read_text())
    data["phases"][0]["duration_s"] = float("inf")
    victim.write_text(json.dumps(data))
    out = coldstart("report", str(results), "--out", str(tmp_path / "r.html"))
    assert out.returncode == 2 and "is not finite" in out.stderr, out
    _no_traceback(out.stdout, out.stderr)


def test_an_unwritable_markdown_path_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    out = coldstart("compare", str(CPU_LANE), str(CPU_LANE), "--budgets", "", "--markdown",
                    str(tmp_path / "afile" / "x.md"))
    assert out.returncode == 2, out
    assert out.stderr.startswith("coldstart compare: ") and "afile" in out.stderr, out
    _no_traceback(out.stdout, out.stderr)


def test_an_unwritable_step_summary_is_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(tmp_path)}  # a directory: cannot be appended to
    out = coldstart("compare", str(CPU_LANE), str(CPU_LANE), "--budgets", "", env=env)
    assert out.returncode == 2, out
    _no_traceback(out.stdout, out.stderr)


def test_an_unwritable_report_out_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    out = coldstart("report", str(CPU_LANE), "--out", str(tmp_path / "afile" / "report.html"))
    assert out.returncode == 2, out
    _no_traceback(out.stdout, out.stderr)


def test_a_closed_pipe_keeps_the_verdict(tmp_path: Path) -> None:
    # on_undecided = "pass": the same runs twice are undecided (one start a side), passing with exit 0, so a
    # BrokenPipe crash (exit 2) would show.
    config = tmp_path / "compare.toml"
    config.write_text('on_undecided = "pass"\n')
    out = coldstart("compare", str(CPU_LANE), str(CPU_LANE), "--budgets", "", "--config", str(config),
                    shell_pipe="| head -c 20")
    assert out.returncode == 0, out  # pipefail: compare's own status, not a BrokenPipe crash
    _no_traceback(out.stderr)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(tmp_path)}
    out = coldstart("--debug", "compare", str(CPU_LANE), str(CPU_LANE), "--budgets", "", env=env)
    assert out.returncode == 2 and "Traceback" in out.stderr, out


def test_a_corrupt_asv_machine_file_in_publish_is_exit_2(tmp_path: Path) -> None:
    results = tmp_path / "asv"
    (results / "m1").mkdir(parents=True)
    (results / "m1" / "machine.json").write_text("{not json")
    (results / "benchmarks.json").write_text("[]")
    conf = tmp_path / "asv.conf.json"
    conf.write_text(json.dumps({"version": 1, "project": "x", "repo": str(Path.cwd()), "results_dir": str(results),
                                "html_dir": str(tmp_path / "html")}))
    out = coldstart("publish", "--config", str(conf))
    assert out.returncode == 2, out
    _no_traceback(out.stdout, out.stderr)


@pytest.mark.parametrize(("base_status", "head_status", "code", "says"), [
    ("ok", "server_exited", 1, "HEAD server failed to start in"),
    ("ok", "timeout", 1, "HEAD server failed to start in"),
    ("ok", "unhealthy", 1, "HEAD server failed to start in"),
    ("ok", "interrupted", 2, "did not complete for a reason outside the server"),
    ("ok", "harness_error", 2, "did not complete for a reason outside the server"),
    ("ok", "preflight_failed", 2, "did not complete for a reason outside the server"),
    ("ok", "error", 2, "did not complete for a reason outside the server"),  # files from before the split
    ("interrupted", "ok", 2, "did not complete for a reason outside the server"),
    ("server_exited", "server_exited", 2, "the server failed on both sides"),
])
def test_failure_kinds_decide_the_exit_code(tmp_path: Path, base_status: str, head_status: str, code: int,
                                            says: str) -> None:
    base = baseline_runs(tmp_path / "base", None if base_status == "ok" else base_status, f"{base_status}: x")
    head = baseline_runs(tmp_path / "head", None if head_status == "ok" else head_status, f"{head_status}: y")
    out = coldstart("compare", str(base), str(head), "--budgets", "")
    assert out.returncode == code, out.stdout[-3000:] + out.stderr
    assert says in out.stdout, out.stdout[-3000:]
    _no_traceback(out.stdout, out.stderr)
