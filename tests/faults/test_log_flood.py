"""A log flood (8 KiB lines as fast as the pipe takes them) was read at ~8 MB/s with memory growing with
the log, and the deadline slipped to 2-3x ``--coldstart-timeout``: the whole log was re-parsed at every
progress report. Lines are now parsed once on arrival and kept in a bounded buffer; the deadline holds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from pytest_coldstart.launch import base
from pytest_coldstart.launch import process as owned
from pytest_coldstart.launch import registry as launch_registry
from pytest_coldstart.launch.base import LaunchSpec, free_port
from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.clock import SystemClock
from pytest_coldstart.model.errors import ReadinessTimeout
from pytest_coldstart.model.registry import load_registry
from tests.conftest import REPO
from tests.faults.conftest import fake_registry
from tests.faults.fake_launcher import FakeLauncher

LINE_BYTES = 8192


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(launch_registry.LAUNCHERS, "fake", "tests.faults.fake_launcher:FakeLauncher")
    return fake_registry(tmp_path / "registry")


def test_a_flood_is_kept_in_bounded_memory_with_its_tail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keep = 2 * 2**20
    monkeypatch.setattr(owned, "KEEP_BYTES", keep)
    monkeypatch.setenv("FAKE_MODE", "flood")
    spec = LaunchSpec(model_ref="fake", served_name="fake", port=free_port(), log_path=tmp_path / "flood.log",
                      timeout_s=30, python=sys.executable)
    server = FakeLauncher().start(spec, SystemClock())
    try:
        deadline = time.monotonic() + 60
        while _size(spec.log_path) < 8 * keep and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = server.process.lines()
        tail = server.process.tail(50)
    finally:
        server.stop()
    size = spec.log_path.stat().st_size
    spec.log_path.unlink()  # tens of MB: not kept in pytest's basetemp
    assert size >= 8 * keep, "the flood was read too slowly to test anything"
    kept = sum(len(line.text) for line in lines)
    assert kept <= keep + owned.TAIL_LINES * LINE_BYTES + LINE_BYTES, f"{kept} bytes of log kept in memory"
    assert server.process.dropped_lines > 0
    assert len(tail) == 50 and all(line.startswith("INFO flood xxx") for line in tail)
    assert lines[0].text == "INFO Started server process"  # the head is kept, the markers, the tail
    assert lines[-len(tail):] and lines[-1].text == tail[-1]


def test_the_deadline_holds_under_a_flood(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "PROGRESS_EVERY_S", 1.0)  # a progress report every second, as a busy start has
    reports: list[float] = []
    settings = Settings(registry_dir=fake, results_dir=tmp_path / "results", workdir=tmp_path / "work",
                        repo_dir=REPO, timeout_s=8, probe=False, otel=False, warm_requests=0)
    runner = ColdStartRunner(settings, load_registry(fake), progress=lambda case, phase, t: reports.append(t))
    t0 = time.monotonic()
    with pytest.raises(ReadinessTimeout, match="not ready after 8 s"):
        runner.run(Case("fake", "mode_flood", "fake"))
    took_s = time.monotonic() - t0
    for log in (tmp_path / "results" / "logs").glob("*.log"):
        log.unlink()  # a few hundred MB: not kept in pytest's basetemp
    assert took_s < 8 + owned.DEFAULT_GRACE_S + 4, f"the 8 s deadline took {took_s:.1f} s"
    assert len(reports) >= 2  # progress was reported all along (each report costs markers, not the log)
