"""The plugin's surface: options, marker, parametrization, and bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

REGISTRY = f"--coldstart-registry={REPO / 'benchmarks'}"
BUDGETS = f"--coldstart-budgets={REPO / 'benchmarks' / 'budgets.toml'}"

SUITE = """
import pytest

@pytest.mark.coldstart
def test_cold(coldstart):
    assert coldstart.case.model

def test_unrelated():
    pass
"""


def test_help_explains_every_option_with_units_and_defaults(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    for flag in ("--coldstart-model=MODEL", "--coldstart-optimization=OPTIMIZATION", "--coldstart-launcher=LAUNCHER",
                 "--coldstart-repeat=REPEAT",
                 "--coldstart-results=RESULTS", "--coldstart-budgets=BUDGETS", "--coldstart-timeout=TIMEOUT"):
        assert flag in out
    assert "Seconds to wait for GET /health" in out
    assert "Default: 'tiny-llama'" in " ".join(out.split())
    assert "coldstart_timeout" in out  # ini equivalent named


def test_marker_is_registered(pytester):
    assert "@pytest.mark.coldstart:" in pytester.runpytest("--markers").stdout.str()


def test_parametrized_over_model_optimization_launcher_repeat(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--collect-only", "-q", REGISTRY, "--coldstart-repeat=2", "-m", "coldstart")
    ids = [line for line in result.stdout.lines if "::test_cold[" in line]
    assert ids == [
        "test_suite.py::test_cold[tiny-llama-baseline-vllm-r0]",
        "test_suite.py::test_cold[tiny-llama-baseline-vllm-r1]",
        "test_suite.py::test_cold[tiny-llama-compile_cache-vllm-r0]",
        "test_suite.py::test_cold[tiny-llama-compile_cache-vllm-r1]",
    ]
    assert "test_unrelated" not in result.stdout.str()  # -m coldstart deselects it


def test_fixture_use_alone_adds_the_marker(pytester):
    pytester.makepyfile(test_suite="def test_x(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", REGISTRY, "-m", "coldstart", "--coldstart-optimization=baseline")
    assert "test_suite.py::test_x[tiny-llama-baseline-vllm-r0]" in result.stdout.str()


@pytest.mark.parametrize(("args", "message"), [
    (["--coldstart-model=gpt-5"], "unknown model 'gpt-5'; known models: tiny-llama, llama-3-8b, llama-3-70b, qwen-3-235b"),
    (["--coldstart-optimization=warp"], "unknown optimization 'warp'; known optimizations: baseline, compile_cache"),
    (["--coldstart-launcher=kubernetes"], "unknown launcher 'kubernetes'; known launchers: vllm"),
])
def test_unknown_names_fail_before_anything_runs(pytester, args, message):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(REGISTRY, *args, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}*"])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize(("args", "message"), [
    (["--coldstart-repeat=0"], "Could not parse value: '0'. Expected a number > 0"),
    (["--coldstart-timeout=soon"], "Could not parse value: 'soon'"),
    (["--coldstart-model="], "Could not parse value: ''. Expected comma-separated names"),
    (["--coldstart-port=99999"], "Expected a port 1-65535"),
])
def test_bad_option_values(pytester, args, message):
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_newer_schema_results_stop_the_session_and_nothing_is_overwritten(pytester):
    pytester.makepyfile(test_suite=SUITE)
    runs = pytester.path / "results" / "runs"
    runs.mkdir(parents=True)
    future = runs / "future.json"
    future.write_text(json.dumps({"schema_version": 99, "model": "tiny-llama"}))
    before = future.read_bytes()
    result = pytester.runpytest(REGISTRY, BUDGETS, "-m", "coldstart")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "written by a newer pytest-coldstart (schema 99" in result.stderr.str()
    assert future.read_bytes() == before
    assert sorted(p.name for p in runs.iterdir()) == ["future.json"]


def test_bad_budgets_file_stops_the_session(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.path.joinpath("budgets.toml").write_text('[tiny-llama."*"]\nlunch = 3\n')
    result = pytester.runpytest(REGISTRY, "--coldstart-budgets=budgets.toml", "-m", "coldstart")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown phase 'lunch'" in result.stderr.str()


def test_an_optimization_outside_the_models_default_list_can_be_asked_for(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--collect-only", "-q", REGISTRY, "--coldstart-optimization=enforce_eager", "-m", "coldstart")
    assert "test_suite.py::test_cold[tiny-llama-enforce_eager-vllm-r0]" in result.stdout.str()


def test_ini_options_are_read(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeini(f"[pytest]\ncoldstart_registry = {REPO / 'benchmarks'}\ncoldstart_optimization = baseline\n"
                     "coldstart_repeat = 3\n")
    result = pytester.runpytest("--collect-only", "-q", "-m", "coldstart")
    assert sum("::test_cold[" in line for line in result.stdout.lines) == 3


def test_unrelated_suites_are_left_alone(pytester):
    """The plugin is installed for every pytest run in the venv: no registry, no problem."""
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
