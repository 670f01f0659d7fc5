"""--coldstart-compare-to and --coldstart-asv through pytest itself (pytester subprocesses).

No server starts here: each session's test takes real CPU-lane result files (tests/data/compare/runs) as
its runs, the way `coldstart.run()` would have added them, so the plugin's gate and recording paths run
as in a real session. tests/integration/test_gate_real.py does the same with real cold starts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO

pytest.importorskip("asv")
RUNS = DATA / "compare" / "runs"
REGISTRY = f"--coldstart-registry={REPO / 'benchmarks'}"
NO_BUDGETS = "--coldstart-budgets="  # empty: no budgets (a named file that does not exist is an error)

INJECT = """
import json
from pathlib import Path
from pytest_coldstart.plugin import state_of
from pytest_coldstart.model.result import RunResult

def test_cold(coldstart, request):
    state = state_of(request.config)
    for path in sorted(Path({runs!r}).glob("*.json")):
        data = json.loads(path.read_text())
        data["started_at"] += {tag!r}
        for phase in data["phases"]:
            if phase["name"] == "torch_compile":
                phase["duration_s"] += {slow_s}
        data["total_ready_s"] += {slow_s}
        state.runner.results.append(RunResult.from_dict(data))
"""


def _suite(pytester: pytest.Pytester, slow_s: float = 0.0, tag: str = "") -> None:
    pytester.makepyfile(test_suite=INJECT.format(runs=str(RUNS), slow_s=slow_s, tag=tag))


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base-results"
    shutil.copytree(RUNS, base / "runs")
    return base


def _args(*extra: str) -> list[str]:
    return [REGISTRY, NO_BUDGETS, "--coldstart-model=tiny-llama", "--coldstart-optimization=baseline", "-p",
            "no:cacheprovider", *extra]


def test_help_lists_the_history_options(pytester: pytest.Pytester) -> None:
    out = pytester.runpytest("--help").stdout.str()
    for flag in ("--coldstart-asv=ASV", "--coldstart-commit=COMMIT", "--coldstart-machine=MACHINE",
                 "--coldstart-compare-to=COMPARE_TO"):
        assert flag in out
    assert "coldstart_compare_to" in out


def test_regression_fails_the_session_with_a_table_not_a_traceback(pytester: pytest.Pytester,
                                                                   tmp_path: Path) -> None:
    _suite(pytester, slow_s=20.0)
    summary = tmp_path / "step-summary.md"
    pytester._monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))  # type: ignore[attr-defined]
    result = pytester.runpytest_subprocess(*_args(f"--coldstart-compare-to={_base(tmp_path)}"))
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "coldstart comparison with" in out and "REGRESSED" in out and "torch_compile" in out
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert "1 passed" in out  # the test itself passed; the gate failed the session
    assert "torch_compile" in summary.read_text().splitlines()[1]
    # compile_cache is in neither side: nothing partial; the base's other cases would only be noted.


def test_same_runs_are_undecided_never_a_silent_pass(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Three starts a side of the same code cannot rule out +10 %: the session says UNDECIDED and exits 2."""
    _suite(pytester, tag="-again")
    result = pytester.runpytest_subprocess(*_args(f"--coldstart-compare-to={_base(tmp_path)}"))
    out = result.stdout.str()
    assert result.ret == 2, out
    assert "cold-start comparison: UNDECIDED (exit 2)" in out and "REGRESS" not in out
    assert "more starts per side" in out  # what would settle it


def test_xdist_refuses_the_comparison_instead_of_skipping_it(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Under pytest-xdist the controller holds no results: the gate is refused (exit 2), never passed silently."""
    pytest.importorskip("xdist")
    _suite(pytester, slow_s=20.0)
    result = pytester.runpytest_subprocess(*_args(f"--coldstart-compare-to={_base(tmp_path)}", "-n", "2"))
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, out
    assert "--coldstart-compare-to does not work under pytest-xdist (-n 2)" in out
    assert "passed" not in result.stdout.str() and "Traceback" not in out


@pytest.mark.parametrize(("args", "message"), [
    (["--coldstart-compare-to=no-such-ref", f"--rootdir={REPO}"], "unknown commit 'no-such-ref'"),
    (["--coldstart-compare-to=/nonexistent/results", f"--rootdir={REPO}"], "no such results directory: /nonexistent/results"),
    (["--coldstart-asv=asv-results"], "is not a git repository"),  # pytester's rootdir is no clone
])
def test_bad_history_options_stop_before_any_cold_start(pytester: pytest.Pytester, args: list[str],
                                                        message: str) -> None:
    _suite(pytester)
    result = pytester.runpytest_subprocess(*_args(*args))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "passed" not in result.stdout.str()


def test_records_the_session_into_asv(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _suite(pytester, tag="-asv")
    asv_dir = tmp_path / "asv-results"
    result = pytester.runpytest_subprocess(*_args(f"--coldstart-asv={asv_dir}", "--coldstart-commit=HEAD",
                                                  "--coldstart-machine=ci-cpu", f"--rootdir={REPO}"))
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "asv: recorded 3 run(s)" in out and "on ci-cpu" in out
    files = sorted((asv_dir / "ci-cpu").glob("*-coldstart.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["params"] == {"machine": "ci-cpu"}
    assert (asv_dir / "benchmarks.json").is_file()
