"""pytest hooks and fixtures: turn pytest objects into plain values, call the core."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_coldstart.history.gate import HistorySettings
from pytest_coldstart.launch.registry import get_launcher
from pytest_coldstart.measure.config import load_budgets
from pytest_coldstart.measure.runner import ColdStartRunner, LiveRun, Settings
from pytest_coldstart.model.budgets import Budgets, breaches, check_budgets
from pytest_coldstart.model.case import Case, group_by_case
from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.model.registry import Registry, load_registry
from pytest_coldstart.model.result import RunResult, check_writable, load_results
from pytest_coldstart.plugin.history import register as register_history
from pytest_coldstart.plugin.options import add_options, launcher_options, names, option
from pytest_coldstart.report.tables import render_breaches, render_summary

__all__ = ["ColdstartHandle", "ColdstartState", "coldstart", "coldstart_case", "state_of"]

STATE_KEY = pytest.StashKey["ColdstartState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


class ColdstartState:
    """Per-session state: resolved options, the lazily loaded registry, the runner."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        root = config.rootpath
        self.models: tuple[str, ...] = option(config, "coldstart_model")
        self.optimizations: tuple[str, ...] = option(config, "coldstart_optimization")
        self.launchers: tuple[str, ...] = option(config, "coldstart_launcher")
        self.repeat: int = option(config, "coldstart_repeat")
        self.budgets_path = root / option(config, "coldstart_budgets")
        self.settings = Settings(
            registry_dir=root / option(config, "coldstart_registry"),
            results_dir=root / option(config, "coldstart_results"),
            workdir=root / option(config, "coldstart_workdir"),
            repo_dir=root, timeout_s=option(config, "coldstart_timeout"), port=option(config, "coldstart_port"),
            launcher_options=launcher_options(config), profile=option(config, "coldstart_profile"),
        )
        self.errors: list[str] = []
        self.history = HistorySettings.from_options(
            root, self.settings.registry_dir, asv=option(config, "coldstart_asv"),
            commit=option(config, "coldstart_commit"), machine=option(config, "coldstart_machine"),
            compare_to=option(config, "coldstart_compare_to"))
        self._registry: Registry | None = None
        self._budgets: Budgets | None = None
        self._runner: ColdStartRunner | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = load_registry(self.settings.registry_dir)
        return self._registry

    @property
    def budgets(self) -> Budgets:
        if self._budgets is None:
            self._budgets = load_budgets(self.budgets_path, registry=self.registry)
        return self._budgets

    @property
    def runner(self) -> ColdStartRunner:
        if self._runner is None:
            self._runner = ColdStartRunner(self.settings, self.registry, progress=self._progress)
            _stop_servers_on_sigterm()
        return self._runner

    @property
    def results(self) -> list[RunResult]:
        return self._runner.results if self._runner else []

    def cases(self, launchers: tuple[str, ...] | None = None) -> list[Case]:
        """Model x optimization x launcher x repeat, every name checked.

        *launchers* overrides ``--launcher`` (a test's ``@pytest.mark.coldstart(launcher=...)``).
        """
        launchers = launchers or self.launchers
        for launcher in launchers:
            get_launcher(launcher)
        cases = []
        for model_name in self.models:
            model = self.registry.model(model_name)
            for opt in self.optimizations or model.optimizations:
                self.registry.optimization(opt)
                for launcher in launchers:
                    cases.extend(Case(model_name, opt, launcher, i) for i in range(self.repeat))
        return cases

    def _progress(self, case_id: str, phase: str, elapsed_s: float) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            return
        # A minute-long start must show life; fd capture would swallow it.
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(f"[coldstart] {case_id}: {phase} ({elapsed_s:.0f} s since spawn)")


def _stop_servers_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt while cold starts run.

    Servers run in sessions of their own, so a CI cancel (SIGTERM to pytest)
    would otherwise kill pytest without its cleanup and orphan them; as an
    interrupt, the runner's context managers stop every server first.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return  # someone else owns SIGTERM; leave it alone

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}: stopping cold-start servers")

    signal.signal(signal.SIGTERM, interrupt)


def state_of(config: pytest.Config) -> ColdstartState:
    """The session's coldstart state (options, registry, runner, results)."""
    return config.stash[STATE_KEY]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "coldstart: a cold-start benchmark (uses the `coldstart` fixture); "
                            "coldstart(launcher='ray-serve') pins the test to launchers, overriding --launcher")
    state = ColdstartState(config)
    config.stash[STATE_KEY] = state
    register_history(config, state, state.history)
    explicit = any(config.getoption(d) is not None for d in ("coldstart_model", "coldstart_optimization",
                                                             "coldstart_launcher"))
    if explicit:  # the user asked for cold starts: bad names fail before anything runs
        try:
            state.cases()
        except ColdstartError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "coldstart_case" not in metafunc.fixturenames:
        return
    state = state_of(metafunc.config)
    marker = metafunc.definition.get_closest_marker("coldstart")
    try:
        pinned = marker.kwargs.get("launcher") if marker else None
        wanted = names(pinned if isinstance(pinned, str) else ",".join(pinned)) if pinned else None
        cases = state.cases(wanted)
    except argparse.ArgumentTypeError as exc:
        state.errors.append(f"{metafunc.definition.nodeid}: @pytest.mark.coldstart(launcher=...): {exc}")
        cases = []
    except ColdstartError as exc:
        state.errors.append(str(exc))
        cases = []
    metafunc.parametrize("coldstart_case", cases, ids=[c.id for c in cases])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "coldstart" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.coldstart)


def pytest_collection_finish(session: pytest.Session) -> None:
    state = state_of(session.config)
    if state.errors:
        raise pytest.UsageError(*sorted(set(state.errors)))
    if any("coldstart" in getattr(i, "fixturenames", ()) for i in session.items):
        try:  # refuse up front rather than after an hour of cold starts
            _ = state.budgets  # loads and checks the budgets file
            check_writable(state.settings.results_dir)
            load_results(state.settings.results_dir)
        except ColdstartError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("coldstart_model") is None:
        return None
    s = state_of(config)
    return (f"coldstart: models={','.join(s.models)} optimizations={','.join(s.optimizations) or 'per model'} "
            f"launchers={','.join(s.launchers)} repeat={s.repeat} results={s.settings.results_dir}")


class ColdstartHandle:
    """What the ``coldstart`` fixture gives a test: one case to measure."""

    def __init__(self, state: ColdstartState, case: Case, item: pytest.Item) -> None:
        self.state = state
        self.case = case
        self.item = item

    @contextmanager
    def launch(self) -> Iterator[LiveRun]:
        """Start the server cold; yields it ready (TTFT measured) for more requests.

        The server is stopped and the result saved when the block exits.
        """
        try:
            with self.state.runner.launch(self.case) as live:
                yield live
        except ColdstartError as exc:
            pytest.fail(f"{self.case.id}: {exc}", pytrace=False)

    def run(self, *, check_budgets: bool = True) -> RunResult:
        """Measure one cold start, save it, and (by default) enforce budgets."""
        with self.launch() as live:
            pass
        assert live.result is not None
        if check_budgets:
            self.check_budgets(live.result)
        return live.result

    def check_budgets(self, result: RunResult) -> None:
        """Fail the test with a phase table if any phase is over its budget."""
        try:
            checks = check_budgets(self.state.budgets, result)
        except ColdstartError as exc:
            pytest.fail(str(exc), pytrace=False)
        for check in checks:
            if check.measured_s is not None:
                self.item.user_properties.append((f"coldstart_{check.name}", check.measured_s))
        over = breaches(checks)
        if over:
            title = f"{self.case.id}: {len(over)} budget(s) exceeded ({self.state.budgets.path})"
            pytest.fail(render_breaches(checks, title), pytrace=False)


@pytest.fixture
def coldstart_case() -> Case:
    """The model x optimization x launcher x repeat being measured (parametrized by the plugin)."""
    raise pytest.UsageError("coldstart_case is parametrized by pytest-coldstart; request the `coldstart` fixture")


@pytest.fixture
def coldstart(request: pytest.FixtureRequest, coldstart_case: Case) -> ColdstartHandle:
    """Measure a cold start: ``result = coldstart.run()``.

    Tests using it are parametrized over ``--model`` x ``--optimization`` x
    ``--launcher`` x ``--coldstart-repeat`` and marked ``coldstart``. ``run()``
    starts the server with cold caches, waits for ``/health``, measures time to
    first token, stops the server, saves ``results/runs/*.json`` and fails the
    test with a table if a phase is over budget. ``with coldstart.launch() as
    live:`` gives the ready server (``live.base_url``) for extra requests.
    """
    return ColdstartHandle(state_of(request.config), coldstart_case, request.node)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    state = state_of(terminalreporter.config)
    if not state.results:
        return
    terminalreporter.write_sep("=", "coldstart summary")
    groups = group_by_case(state.results)
    try:
        budgets = state.budgets
    except ColdstartError:
        budgets = None
    for runs in groups.values():
        terminalreporter.write_line(render_summary(runs, budgets))
        terminalreporter.write_line("")
    terminalreporter.write_line(f"results: {state.settings.results_dir / 'runs'}  "
                                f"logs: {state.settings.results_dir / 'logs'}")

