"""pytest side of the history and the gate: ``--coldstart-asv`` and ``--coldstart-compare-to``.

Registered by ``plugin.pytest_configure`` when either option is set; it only
turns pytest objects into plain values and calls ``gate``:

* ``pytest_collection_finish`` checks REF, the commit and asv up front, so a
  typo fails in seconds instead of after an hour of cold starts;
* ``pytest_runtestloop`` (wrapper) compares after the last test and fails the
  session through ``session.testsfailed``: exit 1 and a table, no traceback
  (raising from ``pytest_terminal_summary`` would print one); a comparison
  that could not be made (aborted starts, both sides failing) exits 2;
* ``pytest_sessionfinish`` records into asv (persisting belongs there);
* ``pytest_terminal_summary`` only prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_coldstart.history import commits, gate
from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.plugin.items import is_coldstart_item
from pytest_coldstart.report.compare import append_step_summary, render_markdown, render_text

if TYPE_CHECKING:
    from pytest_coldstart.history.asv_store import RecordOutcome
    from pytest_coldstart.history.compare import Comparison
    from pytest_coldstart.history.samples import SampleSet

PLUGIN_NAME = "coldstart-history"


class HistoryPlugin:
    """Per-session state of the history options; ``state`` is plugin.ColdstartState."""

    def __init__(self, state: Any, settings: gate.HistorySettings, *, implicit: bool = False) -> None:
        self.state = state
        self.settings = settings
        #: History recorded by default (no --coldstart-asv): a repository where it cannot be (no git
        #: commit, no asv) gets a note instead of a failed session.
        self.implicit = implicit
        self.notes: list[str] = []
        self.base: SampleSet | None = None
        self.comparison: Comparison | None = None
        self.recorded: RecordOutcome | None = None
        self.errors: list[str] = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not any(is_coldstart_item(i) for i in session.items):
            return
        s = self.settings
        if s.asv_dir is not None and self.implicit:
            try:
                commits.resolve(s.repo_dir, s.commit)  # no git commit, no history: checked before asv is imported
                gate.check_record_target(s)
            except (ColdstartError, OSError) as exc:
                self.notes.append(f"history not recorded: {exc} (pass --coldstart-asv off to record none, or "
                                  "--coldstart-asv DIR to make it required)")
                self.settings = s = dataclasses.replace(s, asv_dir=None)
        try:
            if s.asv_dir is not None and not self.implicit:
                gate.check_record_target(s)
            if s.compare_to:
                self.base = gate.load_session_base(s)
        except (ColdstartError, OSError) as exc:
            flag = "--coldstart-compare-to" if s.compare_to and s.asv_dir is None else "coldstart history options"
            raise pytest.UsageError(f"{flag}: {exc}") from None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        outcome = yield
        if self.base is not None and self.state.results:
            try:
                budgets = self.state.budgets
            except ColdstartError:
                budgets = None
            self.comparison = gate.compare_session(self.state.results, self.settings, budgets, self.base)
            if self.comparison.exit_code == 1:
                session.testsfailed += 1
        return outcome

    def recordable(self) -> list[Any]:
        """The session's results that go into the history: replays only with ``--coldstart-replay-record on``."""
        from pytest_coldstart.launch.replay import records_replays

        results = list(self.state.results)
        if records_replays(self.state.settings.launcher_options):
            return results
        live = [r for r in results if not r.replayed]
        if len(live) < len(results):
            self.notes.append(f"{len(results) - len(live)} replayed start(s) not recorded into the asv history "
                              "(replays of recorded logs; --coldstart-replay-record on records them)")
        return live

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        results = self.recordable() if self.settings.asv_dir is not None else []
        if self.settings.asv_dir is not None and results:
            try:
                self.recorded = gate.record_session(results, self.settings)
            except ColdstartError as exc:
                if self.implicit:
                    self.notes.append(f"history not recorded: {exc}")
                    return
                self.errors.append(f"asv history not written: {exc}")
                if session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.comparison is not None:
            if self.comparison.exit_code == 2 and session.exitstatus in (pytest.ExitCode.OK,
                                                                         pytest.ExitCode.TESTS_FAILED):
                # "could not decide" is not "regression": the gate's 2 stays 2 (pytest's own 2 is an abort).
                session.exitstatus = 2
            try:
                append_step_summary(render_markdown(self.comparison))
            except OSError as exc:
                self.errors.append(f"$GITHUB_STEP_SUMMARY not written: {exc.strerror or exc}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.comparison is not None:
            terminalreporter.write_sep("=", f"coldstart comparison with {self.settings.compare_to}")
            terminalreporter.write_line(render_text(self.comparison))
            terminalreporter.write_line(f"compare thresholds in force: {self.settings.compare_config}")
        if self.recorded is not None:
            r = self.recorded
            terminalreporter.write_line(f"asv: recorded {r.added_runs} run(s) for commit {r.commit.short} on "
                                        f"{r.machine}: {r.path}")
        for note in self.notes:
            terminalreporter.write_line(f"coldstart: {note}", yellow=True)
        for error in self.errors:
            terminalreporter.write_line(f"coldstart: {error}", red=True)


def register(config: pytest.Config, state: Any, settings: gate.HistorySettings, *, implicit: bool = False) -> None:
    """Called from ``plugin.pytest_configure`` when a history option is set."""
    # Never on an xdist worker: the controller alone records and judges (as pytest's own
    # cacheprovider skips its writes there).
    if hasattr(config, "workerinput"):
        return
    if settings.compare_to and _parallel(config):
        # The controller never sees the workers' results, so the comparison would be skipped and the session
        # would exit 0 without one. Cold starts must not share the machine anyway: refuse, exit 2.
        pytest.exit(f"--coldstart-compare-to does not work under pytest-xdist ({_parallel(config)}): the cold starts "
                    "run in the workers and the controller would judge nothing; run without -n/--dist", returncode=2)
    if settings.asv_dir is not None or settings.compare_to:
        config.pluginmanager.register(HistoryPlugin(state, settings, implicit=implicit), PLUGIN_NAME)


def _parallel(config: pytest.Config) -> str:
    """How pytest-xdist distributes this session ("-n 2", "--dist load"), or "" when it does not."""
    dist = getattr(config.option, "dist", "no") or "no"
    workers = getattr(config.option, "numprocesses", None)
    if dist == "no" or getattr(config.option, "collectonly", False):
        return ""
    return f"-n {workers}" if workers else f"--dist {dist}"
