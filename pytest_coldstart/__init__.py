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

if TYPE_CHECKING:
    from pytest_coldstart.logs.timeline import Timeline, timeline_from_log
    from pytest_coldstart.measure.runner import ColdStartRunner, LiveRun, Settings
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
    from pytest_coldstart.plugin.session import ColdstartHandle

    Result = RunResult

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION", "CachePolicy", "Case", "CaseKey", "ColdStartRunner", "ColdstartError", "ColdstartHandle",
    "ConfigError", "ExitStatus", "LaunchError", "LiveRun", "Phase", "PortInUseError", "ReadinessTimeout", "Result",
    "RunResult", "SchemaVersionError", "ServerExitedError", "Settings", "Timeline", "__version__", "load_result",
    "load_results", "timeline_from_log",
]

# Every name is imported on first use: pytest imports this package in every session (the plugin's entry
# point is pytest_coldstart.plugin), and a session without cold-start tests must not pay for the log
# grammar, the result model or httpx. ``Result`` is ``RunResult`` (one measured start).
_LAZY: dict[str, tuple[str, str]] = {
    "Timeline": ("pytest_coldstart.logs.timeline", "Timeline"),
    "timeline_from_log": ("pytest_coldstart.logs.timeline", "timeline_from_log"),
    **{name: ("pytest_coldstart.model.case", name) for name in ("CachePolicy", "Case", "CaseKey", "ExitStatus")},
    **{name: ("pytest_coldstart.model.errors", name) for name in (
        "ColdstartError", "ConfigError", "LaunchError", "PortInUseError", "ReadinessTimeout", "SchemaVersionError",
        "ServerExitedError")},
    "Phase": ("pytest_coldstart.model.phase", "Phase"),
    **{name: ("pytest_coldstart.model.result", name) for name in (
        "SCHEMA_VERSION", "RunResult", "load_result", "load_results")},
    "Result": ("pytest_coldstart.model.result", "RunResult"),
    **{name: ("pytest_coldstart.measure.runner", name) for name in ("ColdStartRunner", "LiveRun", "Settings")},
    "ColdstartHandle": ("pytest_coldstart.plugin.session", "ColdstartHandle"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # once: later lookups skip this function
        return value
    raise AttributeError(f"module 'pytest_coldstart' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
