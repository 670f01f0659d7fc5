"""Hooks a suite (its ``conftest.py``) or another plugin implements to work with pytest-coldstart.

Registered through ``pytest_addhooks``; implement a hook by defining a function of the same name
(any subset of its arguments, as with pytest's own hooks). docs/reference/extending.md shows them
in use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_coldstart.model.result import RunResult


@pytest.hookspec
def pytest_coldstart_result(result: RunResult, item: pytest.Item, config: pytest.Config) -> None:
    """Called once for every cold-start result, right after it was written to ``RESULTS/runs/``.

    Failed starts too (``result.exit_status`` says how it ended); a start that was interrupted
    (Ctrl-C, CI cancel) may skip it. Called in the test that made the start, after the server was
    stopped and before budgets are checked, so an implementation may record more about the run:
    ``item.user_properties`` (JUnit XML), a file of its own, a metrics push.

    :param result: the measured start, as saved (a frozen value: derive from it, do not change it;
        ``result.to_dict()`` is the saved JSON).
    :param item: the test that started the server.
    :param config: the pytest config (``config.stash``, options).

    An exception raised here fails that test with its traceback; the result stays saved.
    """
