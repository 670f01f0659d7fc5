"""pytest hooks and fixtures: turn pytest objects into plain values, call the core."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_coldstart.model.budgets import Budgets, breaches, check_budgets, load_budgets
from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.history.gate import HistorySettings
from pytest_coldstart.plugin.history import register as register_history
from pytest_coldstart.launch.registry import KNOWN_LAUNCHERS, get_launcher
from pytest_coldstart.model.registry import Registry, load_registry
from pytest_coldstart.report.tables import render_breaches, render_summary
from pytest_coldstart.model.result import RunResult, check_writable, load_results
from pytest_coldstart.measure.runner import Case, ColdStartRunner, LiveRun, Settings

STATE_KEY = pytest.StashKey["ColdstartState"]()
DEFAULT_MODEL = "tiny-llama"


def _names(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. Expected comma-separated names, "
                                         "e.g. tiny-llama,llama-3-8b")
    return names


def _positive(kind: Callable[[str], Any], example: str) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or number <= 0:
            raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. Expected a number > 0, e.g. {example}")
        return number
    return parse


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. Expected a port 1-65535, or 0 for a free one")
    return int(value)


# (option, dest/ini name, parser, default, help)
_OPTIONS: tuple[tuple[str, str, Callable[[str], Any], str, str], ...] = (
    ("--model", "coldstart_model", _names, DEFAULT_MODEL,
     "Comma-separated models to start cold, from models.toml in the registry dir. Default: %(default)s"),
    ("--optimization", "coldstart_optimization", _names, "",
     "Comma-separated optimizations (baseline, compile_cache, enforce_eager, ...). "
     "Default: the ones each model lists in models.toml"),
    ("--launcher", "coldstart_launcher", _names, "vllm",
     f"Comma-separated server launchers ({', '.join(KNOWN_LAUNCHERS)}). Default: %(default)s"),
    ("--coldstart-repeat", "coldstart_repeat", _positive(int, "3"), "1",
     "Cold starts per model x optimization; the summary shows medians. Default: %(default)s"),
    ("--coldstart-results", "coldstart_results", str, "results",
     "Directory for results: runs/*.json (one per start) and logs/*.log. Default: %(default)s"),
    ("--coldstart-budgets", "coldstart_budgets", str, "benchmarks/budgets.toml",
     "TOML file of per-phase budgets in seconds; a breach fails the test. Default: %(default)s"),
    ("--coldstart-timeout", "coldstart_timeout", _positive(float, "900"), "900",
     "Seconds to wait for GET /health before failing with the last phase reached. Default: %(default)s"),
    ("--coldstart-registry", "coldstart_registry", str, "benchmarks",
     "Directory holding models.toml and optimizations.toml. Default: %(default)s"),
    ("--coldstart-workdir", "coldstart_workdir", str, ".coldstart",
     "Scratch directory: generated models, compile caches, per-run cold caches. Default: %(default)s"),
    ("--coldstart-port", "coldstart_port", _port, "0",
     "Port for the server; 0 picks a free one per start. Default: %(default)s"),
    # History and PR gate (gate.py, history_plugin.py).
    ("--coldstart-asv", "coldstart_asv", str, "",
     "At session end, also record the runs into this asv results directory (e.g. results). Default: off"),
    ("--coldstart-commit", "coldstart_commit", str, "HEAD",
     "Commit (ref or hash) the asv results are recorded against. Default: %(default)s"),
    ("--coldstart-machine", "coldstart_machine", str, "",
     "asv machine name; give identical hosts one name. Default: derived from the GPU or CPU model"),
    ("--coldstart-compare-to", "coldstart_compare_to", str, "",
     "Compare this session's starts with REF (a results directory, or a commit recorded in asv) using "
     "benchmarks/compare.toml; a regression fails the session (exit 1). Default: off"),
    # Ray Serve LLM launcher (launchers/ray_serve.py).
    ("--ray-address", "coldstart_ray_address", str, "",
     "--launcher ray-serve: join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a local "
     "Ray; only the benchmark's app is deleted afterwards. Default: a local Ray per start"),
    ("--ray-replicas", "coldstart_ray_replicas", lambda v: _ray_replicas(v), "0,0,1",
     "--launcher ray-serve: MIN,INITIAL,MAX replicas of the LLM deployment's autoscaling_config; the first "
     "request scales it from INITIAL. Default: %(default)s (scale from zero)"),
)


def _ray_replicas(value: str) -> str:
    from pytest_coldstart.launch.ray_serve import parse_replicas

    try:
        parse_replicas(value)
    except ColdstartError as exc:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. {exc}") from None
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("coldstart", "cold-start benchmarking of LLM servers (pytest-coldstart)")
    for flag, dest, parse, default, help_text in _OPTIONS:
        group.addoption(flag, dest=dest, metavar=dest.removeprefix("coldstart_").upper(), type=parse,
                        default=None, help=help_text.replace("%(default)s", repr(default) if default else "-")
                        + f" (ini: {dest})")
        parser.addini(dest, help_text.replace("%(default)s", repr(default)), default=default)


def _option(config: pytest.Config, dest: str) -> Any:
    value = config.getoption(dest)
    if value is not None:
        return value
    parse = next(p for _, d, p, _, _ in _OPTIONS if d == dest)
    raw = str(config.getini(dest))
    if dest == "coldstart_optimization" and not raw:
        return ()
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {dest}: {exc}") from None


class ColdstartState:
    """Per-session state: resolved options, the lazily loaded registry, the runner."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        root = config.rootpath
        self.models: tuple[str, ...] = _option(config, "coldstart_model")
        self.optimizations: tuple[str, ...] = _option(config, "coldstart_optimization")
        self.launchers: tuple[str, ...] = _option(config, "coldstart_launcher")
        self.repeat: int = _option(config, "coldstart_repeat")
        self.budgets_path = root / _option(config, "coldstart_budgets")
        self.settings = Settings(
            registry_dir=root / _option(config, "coldstart_registry"),
            results_dir=root / _option(config, "coldstart_results"),
            workdir=root / _option(config, "coldstart_workdir"),
            repo_dir=root, timeout_s=_option(config, "coldstart_timeout"), port=_option(config, "coldstart_port"),
            launcher_options=(("ray_address", _option(config, "coldstart_ray_address")),
                              ("ray_replicas", _option(config, "coldstart_ray_replicas"))),
        )
        self.errors: list[str] = []
        self.history = HistorySettings.from_options(
            root, self.settings.registry_dir, asv=_option(config, "coldstart_asv"),
            commit=_option(config, "coldstart_commit"), machine=_option(config, "coldstart_machine"),
            compare_to=_option(config, "coldstart_compare_to"))
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
            self._budgets = load_budgets(self.budgets_path, known_models=set(self.registry.models),
                                         known_optimizations=set(self.registry.optimizations))
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


def _state(config: pytest.Config) -> ColdstartState:
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
    state = _state(metafunc.config)
    marker = metafunc.definition.get_closest_marker("coldstart")
    try:
        pinned = marker.kwargs.get("launcher") if marker else None
        wanted = _names(pinned if isinstance(pinned, str) else ",".join(pinned)) if pinned else None
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
    state = _state(session.config)
    if state.errors:
        raise pytest.UsageError(*sorted(set(state.errors)))
    if any("coldstart" in getattr(i, "fixturenames", ()) for i in session.items):
        try:  # refuse up front rather than after an hour of cold starts
            state.budgets
            check_writable(state.settings.results_dir)
            load_results(state.settings.results_dir)
        except ColdstartError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("coldstart_model") is None:
        return None
    s = _state(config)
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
    return ColdstartHandle(_state(request.config), coldstart_case, request.node)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    state = _state(terminalreporter.config)
    if not state.results:
        return
    terminalreporter.write_sep("=", "coldstart summary")
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for result in state.results:
        groups.setdefault(result.key, []).append(result)
    try:
        budgets = state.budgets
    except ColdstartError:
        budgets = None
    for runs in groups.values():
        terminalreporter.write_line(render_summary(runs, budgets))
        terminalreporter.write_line("")
    terminalreporter.write_line(f"results: {state.settings.results_dir / 'runs'}  "
                                f"logs: {state.settings.results_dir / 'logs'}")

