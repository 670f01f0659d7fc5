"""ray-serve selection: --launcher, per-test pinning, --coldstart-ray-replicas / --coldstart-ray-address (no Ray started)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

REGISTRY = f"--coldstart-registry={REPO / 'benchmarks'}"

PINNED = """
import pytest

@pytest.mark.coldstart(launcher="ray-serve")
def test_ray_only(coldstart):
    pass

@pytest.mark.coldstart
def test_any(coldstart):
    pass
"""


def _ids(result) -> list[str]:
    return [line for line in result.stdout.lines if "::test_" in line]


def test_launcher_option_parametrizes_both_launchers(pytester):
    pytester.makepyfile(test_suite="def test_x(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", REGISTRY, "--coldstart-optimization=baseline",
                                "--coldstart-launcher=vllm,ray-serve")
    assert _ids(result) == ["test_suite.py::test_x[tiny-llama-baseline-vllm-r0]",
                            "test_suite.py::test_x[tiny-llama-baseline-ray-serve-r0]"]


def test_marker_pins_a_test_to_a_launcher(pytester):
    pytester.makepyfile(test_suite=PINNED)
    result = pytester.runpytest("--collect-only", "-q", REGISTRY, "--coldstart-optimization=baseline")
    assert _ids(result) == ["test_suite.py::test_ray_only[tiny-llama-baseline-ray-serve-r0]",
                            "test_suite.py::test_any[tiny-llama-baseline-vllm-r0]"]


def test_marker_with_unknown_launcher_is_a_usage_error(pytester):
    pytester.makepyfile(test_suite=PINNED.replace('launcher="ray-serve"', 'launcher="k8s"'))
    result = pytester.runpytest("--collect-only", "-q", REGISTRY)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown launcher 'k8s'; known launchers: vllm, ray-serve" in result.stderr.str()


@pytest.mark.parametrize("bad", ["1,0,1", "0,0", "x"])
def test_bad_ray_replicas_is_refused_before_anything_runs(pytester, bad):
    result = pytester.runpytest(REGISTRY, f"--coldstart-ray-replicas={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--coldstart-ray-replicas" in result.stderr.str() and "e.g. 0,0,1" in result.stderr.str()


def test_help_lists_the_ray_options(pytester):
    out = pytester.runpytest("--help").stdout.str()
    assert "--coldstart-ray-address=RAY_ADDRESS" in out and "--coldstart-ray-replicas=RAY_REPLICAS" in out
    assert "ray-serve" in out
