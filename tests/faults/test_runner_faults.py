"""Faults a start can meet, through the real runner, Server and OwnedProcess, with the small fake server
of tests/faults/fake_server.py where a real vLLM cannot show the fault on demand (a trickling stream, a
setsid() grandchild, a server that ignores SIGTERM)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from pytest_coldstart.launch import registry as launch_registry
from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import DeadlineExceeded, LaunchError, UnhealthyError
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import load_results
from tests.conftest import REPO
from tests.faults.conftest import alive, fake_registry, pids_in


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(launch_registry.LAUNCHERS, "fake", "tests.faults.fake_launcher:FakeLauncher")
    monkeypatch.setenv("FAKE_PID_FILE", str(tmp_path / "pids"))
    return fake_registry(tmp_path / "registry")


def runner(tmp_path: Path, registry_dir: Path, timeout_s: float) -> ColdStartRunner:
    settings = Settings(registry_dir=registry_dir, results_dir=tmp_path / "results", workdir=tmp_path / "work",
                        repo_dir=REPO, timeout_s=timeout_s)
    return ColdStartRunner(settings, load_registry(registry_dir))


def saved(tmp_path: Path) -> dict:
    (result,) = load_results(tmp_path / "results")
    return json.loads(json.dumps(result.to_dict()))


def test_a_trickling_stream_cannot_outlast_the_deadline(fake: Path, tmp_path: Path) -> None:
    r = runner(tmp_path, fake, timeout_s=6)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="reached: headers received, no token yet"):
        r.run(Case("fake", "mode_trickle", "fake"))
    assert time.monotonic() - t0 < 6 + 8  # the deadline, plus the stop's grace
    result = saved(tmp_path)
    assert result["exit_status"] == "timeout"
    assert "deadline passed while waiting for the first response" in result["error"]
    assert result["last_phase"] == "ready"  # the phase reached is named


def test_an_unhealthy_server_is_unhealthy_not_timeout(fake: Path, tmp_path: Path) -> None:
    with pytest.raises(UnhealthyError, match="/health kept answering 503"):
        runner(tmp_path, fake, timeout_s=3).run(Case("fake", "mode_unhealthy", "fake"))
    assert saved(tmp_path)["exit_status"] == "unhealthy"


def test_setsid_grandchildren_are_found_and_killed(fake: Path, tmp_path: Path) -> None:
    result = runner(tmp_path, fake, timeout_s=30).run(Case("fake", "mode_setsid", "fake"))
    pids = pids_in(tmp_path / "pids")
    assert len(pids) == 4, pids  # server, setsid child, its double-forked grandchild, the orphaned one
    assert result.ok, result.error
    assert not [p for p in pids if alive(p)], "a process outlived the stop"


def test_an_interrupt_is_saved_as_interrupted_with_a_reason(fake: Path, tmp_path: Path) -> None:
    def interrupt(signum: int, frame: object) -> None:
        if len(pids_in(tmp_path / "pids")) < 4:
            return  # not up yet (a loaded machine): the next tick
        signal.setitimer(signal.ITIMER_REAL, 0)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner(tmp_path, fake, timeout_s=60).run(Case("fake", "mode_hang", "fake"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    result = saved(tmp_path)
    assert result["exit_status"] == "interrupted"
    assert result["error"].startswith("interrupted (KeyboardInterrupt)")
    pids = pids_in(tmp_path / "pids")
    assert len(pids) == 4 and not [p for p in pids if alive(p)]


def test_a_second_interrupt_during_the_grace_kills_the_tree(fake: Path, tmp_path: Path) -> None:
    """SIGTERM ignored: the stop waits its grace; a second Ctrl-C then kills everything at once."""
    hits: list[float] = []

    def interrupt(signum: int, frame: object) -> None:
        if len(pids_in(tmp_path / "pids")) < 4:
            return  # not up yet (a loaded machine): the next tick
        hits.append(time.monotonic())
        if len(hits) == 2:
            signal.setitimer(signal.ITIMER_REAL, 0)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)  # the first once it is up (during the wait), the next 1 s later
    try:
        with pytest.raises(KeyboardInterrupt):
            runner(tmp_path, fake, timeout_s=60).run(Case("fake", "mode_hang_ignore_term", "fake"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(hits) == 2
    assert time.monotonic() - hits[1] < 4  # the 5 s grace was cut short: KILL right after the second interrupt
    assert saved(tmp_path)["exit_status"] == "interrupted"
    pids = pids_in(tmp_path / "pids")
    assert len(pids) == 4 and not [p for p in pids if alive(p)]


def test_a_preflight_failure_is_saved_as_such(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_coldstart.measure import runner as runner_module
    from pytest_coldstart.model.errors import PreflightError

    monkeypatch.setattr(runner_module, "START_RESERVE_BYTES", 2**62)  # more than any disk has
    with pytest.raises(PreflightError, match="MiB free at"):
        runner(tmp_path, fake, timeout_s=30).run(Case("fake", "mode_ok", "fake"))
    result = saved(tmp_path)
    assert result["exit_status"] == "preflight_failed" and "MiB free at" in result["error"]
    assert not pids_in(tmp_path / "pids")  # nothing was started


def test_the_callers_own_failure_in_the_block_is_not_the_servers(fake: Path, tmp_path: Path) -> None:
    r = runner(tmp_path, fake, timeout_s=30)

    def use() -> None:
        with r.launch(Case("fake", "mode_ok", "fake")) as live:
            assert live.ttft is not None and live.ttft.completion_text == "hello"
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        use()
    assert saved(tmp_path)["exit_status"] == "ok"


def test_a_launch_error_is_still_a_launch_error(fake: Path, tmp_path: Path) -> None:
    with pytest.raises(LaunchError):
        runner(tmp_path, fake, timeout_s=2).run(Case("fake", "mode_unhealthy", "fake"))


def test_a_compile_cache_start_downloads_its_weights_after_the_populate_start(fake: Path, tmp_path: Path) -> None:
    """The unmeasured populate start downloads the weights too; the measured start must not find them."""
    result = runner(tmp_path, fake, timeout_s=30).run(Case("fakehub", "compile_download", "fake"))
    assert result.ok, result.error
    cache = result.cache
    assert cache["populated"]["populate_log"]  # there was a populate start
    assert cache["weights_downloaded"] is True and cache["cold_verified"] is True, cache
    assert cache["hf_hub_bytes_after"] == 256 * 1024
    assert "hf_hub" in cache["fresh"] and "compile" in cache["warm"], cache
    log = Path(result.log_path).read_text()
    assert "Downloading weights" in log and "no download" not in log
    populate_log = Path(cache["populated"]["populate_log"]).read_text()
    assert "Downloading weights" in populate_log  # it downloaded too, into its own hub cache
