"""A daemon survives: a server that double-forks a ``setsid()`` daemon which re-execs with an empty
environment (no owner marker, its own session, its parent gone) left it serving after "1 passed". It was
re-parented to the harness (a subreaper): the start owns it, stops it, and a survivor fails the start."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_coldstart.launch import process as owned
from pytest_coldstart.launch import registry as launch_registry
from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import HarnessError
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import load_results
from tests.conftest import REPO
from tests.faults.conftest import alive, fake_registry, pids_in


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setitem(launch_registry.LAUNCHERS, "fake", "tests.faults.fake_launcher:FakeLauncher")
    monkeypatch.setenv("FAKE_PID_FILE", str(tmp_path / "pids"))
    yield fake_registry(tmp_path / "registry")
    for pid in pids_in(tmp_path / "pids"):  # whatever the outcome, nothing of the test is left running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def runner(tmp_path: Path, registry_dir: Path) -> ColdStartRunner:
    settings = Settings(registry_dir=registry_dir, results_dir=tmp_path / "results", workdir=tmp_path / "work",
                        repo_dir=REPO, timeout_s=30, probe=False, otel=False, warm_requests=0)
    return ColdStartRunner(settings, load_registry(registry_dir))


def _daemon(tmp_path: Path) -> int:
    pids = pids_in(tmp_path / "pids")
    assert len(pids) == 2, pids  # the server, then its daemon
    daemon = pids[1]
    return daemon


def test_a_daemon_with_an_empty_environment_is_stopped_with_the_start(fake: Path, tmp_path: Path) -> None:
    result = runner(tmp_path, fake).run(Case("fake", "mode_daemonize", "fake"))
    assert result.ok, result.error
    daemon = _daemon(tmp_path)
    assert not alive(daemon), f"the daemon {daemon} outlived the start"


def test_a_survivor_fails_the_start_with_its_pid_and_command_line(fake: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A process the stop cannot end (here: the kill is withheld) is named, and the start is not a pass."""
    monkeypatch.setattr(owned, "_kill", lambda proc: None)
    with pytest.raises(HarnessError, match=r"survived the stop: \d+ \(.*time\.sleep\(3600\)"):
        runner(tmp_path, fake).run(Case("fake", "mode_daemonize", "fake"))
    daemon = _daemon(tmp_path)
    (result,) = load_results(tmp_path / "results")
    assert result.exit_status.value == "harness_error"
    assert f"{daemon} (" in (result.error or "")
