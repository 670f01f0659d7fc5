"""``--coldstart-otel``: on by default, off by flag or ini, and reaches the runner's settings."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

CONFTEST = """
from pytest_coldstart.plugin import state_of

def pytest_collection_finish(session):
    print("OTEL", state_of(session.config).settings.otel)
"""


@pytest.mark.parametrize(("args", "ini", "expected"), [
    ([], "", "True"),
    (["--coldstart-otel=off"], "", "False"),
    ([], "coldstart_otel = off\n", "False"),
    (["--coldstart-otel"], "coldstart_otel = off\n", "True"),
])
def test_otel_flag_reaches_the_runner_settings(pytester, args, ini, expected):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    pytester.makeini(f"[pytest]\ncoldstart_registry = {REPO / 'benchmarks'}\n{ini}")
    result = pytester.runpytest("--collect-only", "-q", "-s", *args)
    assert f"OTEL {expected}" in result.stdout.str()
