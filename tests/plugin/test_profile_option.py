"""``--coldstart-profile``: a bare flag, an ini key, and a clear error for a bad value."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

CONFTEST = """
from pytest_coldstart.plugin import state_of

def pytest_collection_finish(session):
    print("PROFILE", state_of(session.config).settings.profile)
"""


@pytest.mark.parametrize(("args", "ini", "expected"), [
    ([], "", "False"),
    (["--coldstart-profile"], "", "True"),
    (["--coldstart-profile=off"], "coldstart_profile = on\n", "False"),
    ([], "coldstart_profile = yes\n", "True"),
])
def test_profile_flag_reaches_the_runner_settings(pytester, args, ini, expected):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    pytester.makeini(f"[pytest]\ncoldstart_registry = {REPO / 'benchmarks'}\n{ini}")
    result = pytester.runpytest("--collect-only", "-q", "-s", *args)
    assert f"PROFILE {expected}" in result.stdout.str()


def test_bad_profile_value_is_a_usage_error(pytester):
    result = pytester.runpytest("--coldstart-profile=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Expected on or off" in result.stderr.str()
