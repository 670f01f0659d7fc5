"""pytest hooks and fixtures: turn pytest objects into plain values, call the core.

A good guest in other suites: this module is imported by every pytest session where the package is
installed, so it imports nothing heavy (``plugin.session`` holds the runner, the registry and the
reports, imported on first need) and does no work until the session has a cold-start test: one that
uses *this plugin's* ``coldstart`` fixture (a suite's own fixture or parameter that happens to be
called ``coldstart`` does not count), or a cold-start option named on the command line. Every option
and ini key carries the ``coldstart`` prefix.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_coldstart.plugin.items import is_coldstart_item, uses_own_fixture
from pytest_coldstart.plugin.options import add_options, names

if TYPE_CHECKING:
    from pytest_coldstart.model.case import Case
    from pytest_coldstart.plugin.session import ColdstartHandle, ColdstartState

__all__ = ["ColdstartHandle", "ColdstartState", "coldstart", "coldstart_case", "is_coldstart_item", "state_of"]

#: What ``@pytest.mark.coldstart(...)`` accepts; anything else is a usage error naming these.
MARKER_KWARGS = ("launcher",)
#: Options whose presence on the command line means "this session runs cold starts": checked up front.
ASKING_OPTIONS = ("coldstart_model", "coldstart_optimization", "coldstart_launcher")


class SigtermGuard:
    """Turns SIGTERM into KeyboardInterrupt while cold starts run; installed in ``pytest_configure``,
    restored in ``pytest_unconfigure``.

    Servers run in sessions of their own, so a CI cancel (SIGTERM to pytest) would otherwise kill
    pytest without its cleanup and orphan them; as an interrupt, the runner's context managers stop
    every server first. Until the first start (``arm``) the handler does what SIGTERM would have done
    without it (the previous disposition, re-delivered), so a session without cold starts dies by the
    signal as before.
    """

    def __init__(self) -> None:
        self.installed = False
        self.armed = False
        self._previous: Any = signal.SIG_DFL

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if current not in (signal.SIG_DFL, None):
            return  # someone else owns SIGTERM (an outer pytest, a runner): leave it alone
        self._previous = current if current is not None else signal.SIG_DFL
        signal.signal(signal.SIGTERM, self._handle)
        self.installed = True

    def arm(self) -> None:
        self.armed = True

    def restore(self) -> None:
        if self.installed and signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, self._previous)
        self.installed = False
        self.armed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            raise KeyboardInterrupt(f"signal {signum}: stopping cold-start servers")
        # No server started yet: behave as if this handler were not there.
        signal.signal(signal.SIGTERM, self._previous)
        self.installed = False
        os.kill(os.getpid(), signum)


@dataclass
class PluginSession:
    """What the plugin keeps per pytest config before (and whether or not) any cold start is asked for."""

    sigterm: SigtermGuard = field(default_factory=SigtermGuard)
    #: Usage errors found while collecting (bad marker, bad names); raised when a cold-start test is selected.
    errors: list[str] = field(default_factory=list)
    state: ColdstartState | None = None


SESSION_KEY = pytest.StashKey[PluginSession]()


def _session(config: pytest.Config) -> PluginSession:
    found = config.stash.get(SESSION_KEY, None)
    if found is None:
        found = config.stash[SESSION_KEY] = PluginSession()
    return found


def state_of(config: pytest.Config) -> ColdstartState:
    """The session's coldstart state (options, registry, runner, results), made on first use.

    Making it resolves every ``coldstart_*`` option (a bad value is a ``pytest.UsageError``) and
    registers the history plugin; nothing is read or written before a start needs it.
    """
    session = _session(config)
    if session.state is None:
        from pytest_coldstart.plugin.history import register as register_history
        from pytest_coldstart.plugin.session import ColdstartState

        state = ColdstartState(config, on_first_start=session.sigterm.arm)
        session.state = state
        register_history(config, state, state.history, implicit=state.history_implicit)
    return session.state


def __getattr__(name: str) -> Any:
    # The state and handle classes live in plugin.session (heavy imports): loaded when asked for.
    if name in ("ColdstartState", "ColdstartHandle"):
        from pytest_coldstart.plugin import session

        return getattr(session, name)
    raise AttributeError(f"module 'pytest_coldstart.plugin' has no attribute {name!r}")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_coldstart.plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def _asked(config: pytest.Config) -> bool:
    return any(config.getoption(dest, None) is not None for dest in ASKING_OPTIONS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "coldstart: a cold-start benchmark (uses the `coldstart` fixture); "
                            "coldstart(launcher='ray-serve') pins the test to launchers, overriding "
                            "--coldstart-launcher")
    session = _session(config)
    session.sigterm.install()
    if _asked(config):  # the user asked for cold starts: bad names fail before anything runs
        from pytest_coldstart.model.errors import ColdstartError

        try:
            state_of(config).cases()
        except ColdstartError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.sigterm.restore()


def _marker_problem(markers: Iterable[pytest.Mark]) -> str | None:
    for mark in markers:
        unknown = sorted(set(mark.kwargs) - set(MARKER_KWARGS))
        if mark.args or unknown:
            got = ", ".join([*(repr(a) for a in mark.args), *(f"{k}=" for k in unknown)])
            return (f"@pytest.mark.coldstart takes only keyword arguments {', '.join(f'{k}=' for k in MARKER_KWARGS)}"
                    f" (launcher='ray-serve' or launcher=['vllm', 'docker']); got {got}")
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "coldstart_case" not in metafunc.fixturenames or not uses_own_fixture(metafunc.definition):
        return
    session = _session(metafunc.config)
    try:
        params, ids = _params(metafunc)
    except pytest.UsageError as exc:  # raised when a cold-start test is selected (pytest_collection_finish)
        session.errors.append(str(exc))
        params, ids = [], []
    metafunc.parametrize("coldstart_case", params, ids=ids)


def _params(metafunc: pytest.Metafunc) -> tuple[list[Any], list[str]]:
    """The cases of a cold-start test as ``coldstart_case`` parameters (a refused case is skipped with why)."""
    from pytest_coldstart.model.errors import ColdstartError

    where = f"{metafunc.definition.nodeid}: @pytest.mark.coldstart"
    problem = _marker_problem(metafunc.definition.iter_markers("coldstart"))
    if problem is not None:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: {problem}")
    marker = metafunc.definition.get_closest_marker("coldstart")
    pinned = marker.kwargs.get("launcher") if marker else None
    try:
        wanted = names(pinned if isinstance(pinned, str) else ",".join(pinned)) if pinned else None
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"{where}(launcher=...): {exc}") from None
    except TypeError:
        raise pytest.UsageError(f"{where}(launcher=...): expected a launcher name or a list of names, e.g. "
                                "launcher='ray-serve'") from None
    state = state_of(metafunc.config)
    params: list[Any] = []
    ids: list[str] = []
    try:
        for case in state.cases(wanted):
            reason = state.unbound_s3(case) or state.refused(case)  # never attempted: skipped with why (-rs)
            params.append(pytest.param(case, marks=pytest.mark.skip(reason=reason)) if reason else case)
            ids.append(case.id)
    except ColdstartError as exc:
        raise pytest.UsageError(str(exc)) from None
    return params, ids


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_timeout = None
    for item in items:
        if not is_coldstart_item(item):
            continue
        item.add_marker(pytest.mark.coldstart)
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("coldstart_case") if callspec is not None else None
        # pytest-timeout (if installed) must never pre-empt the harness: its thread method would orphan
        # the server and lose the result. The case's own deadlines decide; this only bounds a hang.
        if has_timeout is None:
            has_timeout = config.pluginmanager.hasplugin("timeout")
        if has_timeout and case is not None and item.get_closest_marker("timeout") is None:
            from pytest_coldstart.plugin.session import case_timeout_s

            item.add_marker(pytest.mark.timeout(case_timeout_s(state_of(config), case)))


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(is_coldstart_item(i) for i in session.items):
        return  # no cold-start test selected: nothing read, nothing written
    plugin = _session(session.config)
    if plugin.errors:
        raise pytest.UsageError(*sorted(set(plugin.errors)))
    from pytest_coldstart.plugin.session import check_session

    check_session(state_of(session.config))


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("coldstart_model") is None:
        return None
    s = state_of(config)
    return (f"coldstart: models={','.join(s.models)} optimizations={','.join(s.optimizations) or 'per model'} "
            f"launchers={','.join(s.launchers)} repeat={s.repeat} results={s.settings.results_dir}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    plugin = session.config.stash.get(SESSION_KEY, None)
    if plugin is not None and plugin.state is not None:
        plugin.state.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    plugin = terminalreporter.config.stash.get(SESSION_KEY, None)
    if plugin is None or plugin.state is None:
        return
    from pytest_coldstart.plugin.session import terminal_summary

    terminal_summary(plugin.state, terminalreporter)


@pytest.fixture
def coldstart_case() -> Case:
    """The model x optimization x launcher x repeat being measured (parametrized by the plugin)."""
    raise pytest.UsageError("coldstart_case is parametrized by pytest-coldstart; request the `coldstart` fixture")


@pytest.fixture
def coldstart(request: pytest.FixtureRequest, coldstart_case: Case) -> ColdstartHandle:
    """Measure a cold start: ``result = coldstart.run()``.

    Tests using it are parametrized over ``--coldstart-model`` x ``--coldstart-optimization`` x
    ``--coldstart-launcher`` x ``--coldstart-repeat`` and marked ``coldstart``. ``run()``
    starts the server with cold caches, waits for ``/health``, measures time to
    first token, stops the server, saves ``results/runs/*.json`` and fails the
    test with a table if a phase is over budget. ``with coldstart.launch() as
    live:`` gives the ready server (``live.base_url``) for extra requests.
    """
    from pytest_coldstart.plugin.session import ColdstartHandle

    return ColdstartHandle(state_of(request.config), coldstart_case, request.node)
