"""The plugin's work for a session that runs cold starts: options resolved, registry, runner, results.

Imported only when a session selects a cold-start test (or names a cold-start option): it pulls in
the runner (httpx, psutil), the registry and the report tables, which a pytest session without
cold-start tests must not pay for (``plugin/__init__.py`` holds only the hooks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
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
from pytest_coldstart.plugin.options import explicit, launcher_options, option
from pytest_coldstart.report.tables import render_breaches, render_summary

__all__ = ["ColdstartHandle", "ColdstartState", "case_timeout_s", "check_session", "terminal_summary"]


class ColdstartState:
    """Per-session state: resolved options, the lazily loaded registry, the runner."""

    def __init__(self, config: pytest.Config, *, on_first_start: Callable[[], None] = lambda: None) -> None:
        self.config = config
        #: Called once, when the runner is made (the plugin's SIGTERM handler starts stopping servers then).
        self._on_first_start = on_first_start
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
        try:
            self.s3_location = s3_location(option(config, "coldstart_s3"))
        except ColdstartError as exc:
            raise pytest.UsageError(f"--coldstart-s3: {exc}") from None
        asv = option(config, "coldstart_asv")
        #: History by default: into the results directory unless --coldstart-asv names one or says off.
        self.history_implicit = not asv
        if asv.lower() in ("off", "no", "none", "false", "0"):
            asv = ""
        elif not asv:  # beside the run files, never among them (asv reads every folder there as a machine)
            asv = str(Path(option(config, "coldstart_results")) / "asv")
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
            self._on_first_start()
        return self._runner

    @property
    def results(self) -> list[RunResult]:
        return self._runner.results if self._runner else []

    def cases(self, launchers: tuple[str, ...] | None = None) -> list[Case]:
        """Model x optimization x launcher x repeat, every name checked.

        *launchers* overrides ``--coldstart-launcher`` (a test's ``@pytest.mark.coldstart(launcher=...)``).
        """
        launchers = launchers or self.launchers
        for launcher in launchers:
            get_launcher(launcher).check_options(dict(self.settings.launcher_options))  # its config files too
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
        saved = len(self.state.results)
        try:
            self.state.ready_s3(self.case)
            with self.state.runner.launch(self.case) as live:
                yield live
        except ColdstartError as exc:
            notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", ()))  # e.g. "result not saved: ENOSPC"
            failure = f"{self.case.id}: {exc}{notes}"
        # Every result this start saved (a failed start's too), to the suite's pytest_coldstart_result hooks.
        for result in self.state.results[saved:]:
            self.item.config.hook.pytest_coldstart_result(result=result, item=self.item, config=self.item.config)
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


def check_session(state: ColdstartState) -> None:
    """Refuse up front (budgets, results directory) rather than after an hour of cold starts."""
    try:
        _ = state.budgets  # loads and checks the budgets file
        check_writable(state.settings.results_dir)
        load_results(state.settings.results_dir)
    except ColdstartError as exc:
        raise pytest.UsageError(str(exc)) from None


def terminal_summary(state: ColdstartState, terminalreporter: Any) -> None:
    """The phase table per case, the budgets in force and where results and logs are."""
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

