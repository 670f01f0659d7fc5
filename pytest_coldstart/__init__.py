"""pytest-coldstart: bring an LLM server up cold, time every startup phase.

The public API for your own tests and scripts (everything else may move):

* the ``coldstart`` fixture (``ColdstartHandle``): ``result = coldstart.run()``, or
  ``with coldstart.launch() as live:`` for the ready server (``live.base_url``);
* ``Result`` (``RunResult``): one measured start, as saved under ``results/runs/``;
  ``load_results(DIR)`` reads them back; ``Phase``, ``Timeline``, ``timeline_from_log``;
* ``Case``, ``CaseKey``, ``ExitStatus``, ``CachePolicy``;
* the errors, all ``ColdstartError`` with a message meant for people: ``ConfigError``
  (bad input), ``LaunchError`` (the server did not come up; carries the last phase,
  the log tail and the exit code) and its kinds ``ServerExitedError``,
  ``ReadinessTimeout``, ``PortInUseError``; ``SchemaVersionError`` (a results file
  this version cannot read);
* ``ColdStartRunner`` and ``Settings`` to measure without pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_coldstart.logs.timeline import Timeline, timeline_from_log
from pytest_coldstart.model.case import CachePolicy, Case, CaseKey, ExitStatus
from pytest_coldstart.model.errors import (
    ColdstartError,
    ConfigError,
    LaunchError,
    PortInUseError,
    ReadinessTimeout,
    SchemaVersionError,
    ServerExitedError,
)
from pytest_coldstart.model.phase import Phase
from pytest_coldstart.model.result import SCHEMA_VERSION, RunResult, load_result, load_results

if TYPE_CHECKING:
    from pytest_coldstart.measure.runner import ColdStartRunner, LiveRun, Settings
    from pytest_coldstart.plugin import ColdstartHandle

__version__ = "0.1.0"

#: One measured cold start (what ``coldstart.run()`` returns).
Result = RunResult

__all__ = [
    "SCHEMA_VERSION", "CachePolicy", "Case", "CaseKey", "ColdStartRunner", "ColdstartError", "ColdstartHandle",
    "ConfigError", "ExitStatus", "LaunchError", "LiveRun", "Phase", "PortInUseError", "ReadinessTimeout", "Result",
    "RunResult", "SchemaVersionError", "ServerExitedError", "Settings", "Timeline", "__version__", "load_result",
    "load_results", "timeline_from_log",
]

_LAZY = {"ColdStartRunner": "pytest_coldstart.measure.runner", "LiveRun": "pytest_coldstart.measure.runner",
         "Settings": "pytest_coldstart.measure.runner", "ColdstartHandle": "pytest_coldstart.plugin"}


def __getattr__(name: str) -> Any:
    # The runner pulls in httpx and the launchers, the handle pytest: only when asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_coldstart' has no attribute {name!r}")
