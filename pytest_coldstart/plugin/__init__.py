"""pytest hooks and fixtures: turn pytest objects into plain values, call the core."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pytest_coldstart.history.gate import HistorySettings
from pytest_coldstart.launch.registry import get_launcher
from pytest_coldstart.measure.config import budget_files, compare_config_file, load_budget_layers
from pytest_coldstart.measure.runner import ColdStartRunner, LiveRun, Settings
from pytest_coldstart.model.budgets import Budgets, breaches, check_budgets
from pytest_coldstart.model.case import Case, group_by_case
from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.model.registry import S3_ADVICE, Registry, bind_s3, load_registry, s3_location
from pytest_coldstart.model.result import RunResult, check_writable, load_results
from pytest_coldstart.optimize.registry import refusal
from pytest_coldstart.optimize.s3source import EMBEDDED_LOCATION, EmbeddedS3
from pytest_coldstart.plugin.history import register as register_history
from pytest_coldstart.plugin.options import add_options, explicit, launcher_options, names, option
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
        budgets = option(config, "coldstart_budgets")
        #: None: the packaged budgets + the default file if present; "": none; else that file alone.
        self.budgets_named: Path | str | None = (str(root / budgets) if budgets else "") \
            if explicit(config, "coldstart_budgets") else None
        self.budgets_default = root / budgets
        self.registry_required = explicit(config, "coldstart_registry")
        self.settings = Settings(
            registry_dir=root / option(config, "coldstart_registry"),
            results_dir=root / option(config, "coldstart_results"),
            workdir=root / option(config, "coldstart_workdir"),
            repo_dir=root, timeout_s=option(config, "coldstart_timeout"), port=option(config, "coldstart_port"),
            launcher_options=launcher_options(config), profile=option(config, "coldstart_profile"),
            otel=option(config, "coldstart_otel"),
        )
        self.errors: list[str] = []
        try:
            self.s3_location = s3_location(option(config, "coldstart_s3"))
        except ColdstartError as exc:
            raise pytest.UsageError(f"--coldstart-s3: {exc}") from None
        asv = option(config, "coldstart_asv")
        #: History by default: into the results directory unless --coldstart-asv names one or says off.
        self.history_implicit = not asv
        if asv.lower() in ("off", "no", "none", "false", "0"):
            asv = ""
        elif not asv:
            asv = option(config, "coldstart_results")
        history = HistorySettings.from_options(
            root, self.settings.registry_dir, asv=asv,
            commit=option(config, "coldstart_commit"), machine=option(config, "coldstart_machine"),
            compare_to=option(config, "coldstart_compare_to"))
        # Never the built-in +10 % thresholds: the registry dir's compare.toml, else the packaged one.
        self.history = dataclasses.replace(history, compare_config=compare_config_file(None, self.settings.registry_dir))
        self._registry: Registry | None = None
        self._budgets: Budgets | None = None
        self._runner: ColdStartRunner | None = None
        self._embedded: EmbeddedS3 | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            loaded = load_registry(self.settings.registry_dir, required=self.registry_required, bind=False)
            self._registry = bind_s3(loaded, self.s3_location,
                                     embedded=EMBEDDED_LOCATION if self.s3_location is None else None)
        return self._registry

    @property
    def budget_files(self) -> list[Path]:
        return budget_files(self.budgets_named, self.budgets_default)

    @property
    def budgets(self) -> Budgets:
        if self._budgets is None:
            self._budgets = load_budget_layers(self.budget_files, registry=self.registry)
        return self._budgets

    def unbound_s3(self, case: Case) -> str | None:
        """Why *case* cannot run: its weights are ``s3:NAME`` and no S3 location is configured (else None)."""
        ref = self.registry.model(case.model).unbound_s3(case.optimization)
        if ref is None:
            return None
        return f"{case.model} under {case.optimization} streams its weights from S3 ({ref}): {S3_ADVICE}"

    def refused(self, case: Case) -> str | None:
        """Why *case*'s cache policy cannot run under its launcher (image_cached under vllm), else None."""
        return refusal(case.launcher, self.registry.optimization(case.optimization).cache)

    def ready_s3(self, case: Case) -> None:
        """Start the embedded S3 endpoint when *case* streams from it (first use only)."""
        source = self.registry.model(case.model).source_for(case.optimization)
        if source.startswith(EMBEDDED_LOCATION + "/"):
            if self._embedded is None:
                self._embedded = EmbeddedS3(self.settings.workdir / "embedded-s3" / "moto_server.log")
            if not self._embedded.running:
                self._progress(case.id, "starting the embedded S3 endpoint (moto_server on 127.0.0.1)", 0.0)
                self._embedded.start()

    def close(self) -> None:
        """Stop what the session started besides servers (the embedded S3 endpoint)."""
        if self._embedded is not None:
            self._embedded.stop()

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
        cases: list[Case] = []
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
    register_history(config, state, state.history, implicit=state.history_implicit)
    asked = any(config.getoption(d) is not None for d in ("coldstart_model", "coldstart_optimization",
                                                          "coldstart_launcher"))
    if asked:  # the user asked for cold starts: bad names fail before anything runs
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
    params = []
    for case in cases:
        reason = state.unbound_s3(case) or state.refused(case)  # never attempted: skipped with why (-rs)
        params.append(pytest.param(case, marks=pytest.mark.skip(reason=reason)) if reason else case)
    metafunc.parametrize("coldstart_case", params, ids=[c.id for c in cases])


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None:
        state.close()


#: Seconds on top of the harness's own deadlines before pytest-timeout may fire: stop grace, result, floors.
TEST_TIMEOUT_MARGIN_S = 180.0


def case_timeout_s(state: ColdstartState, case: Case) -> float:
    """The longest a test of *case* can legitimately take: an unmeasured populate start when its cache
    policy may need one, the measured start (each under ``--coldstart-timeout``), plus a margin."""
    try:
        policy = str(state.registry.optimization(case.optimization).cache)
    except ColdstartError:
        policy = "compile"
    starts = 2 if policy in ("compile", "warm") else 1
    return starts * state.settings.timeout_s + TEST_TIMEOUT_MARGIN_S


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = state_of(config)
    has_timeout = config.pluginmanager.hasplugin("timeout")
    for item in items:
        if "coldstart" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.coldstart)
            callspec = getattr(item, "callspec", None)  # parametrized items (pytest.Function) only
            case = callspec.params.get("coldstart_case") if callspec is not None else None
            # pytest-timeout (if installed) must never pre-empt the harness: its thread method would orphan
            # the server and lose the result. The case's own deadlines decide; this only bounds a hang.
            if has_timeout and isinstance(case, Case) and item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(case_timeout_s(state, case)))


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
        failure = None
        try:
            self.state.ready_s3(self.case)
            with self.state.runner.launch(self.case) as live:
                yield live
        except ColdstartError as exc:
            notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", ()))  # e.g. "result not saved: ENOSPC"
            failure = f"{self.case.id}: {exc}{notes}"
        if failure is not None:  # outside the except: the message once, no "During handling of ..."
            pytest.fail(failure, pytrace=False)

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
    terminalreporter.write_line(f"budgets in force: {budgets.path if budgets else 'none (unreadable)'}")
    terminalreporter.write_line(f"results: {state.settings.results_dir / 'runs'}  "
                                f"logs: {state.settings.results_dir / 'logs'}")

