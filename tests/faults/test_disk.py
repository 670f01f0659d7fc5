"""A full disk, on a real small filesystem (tmpfs mounted for the test; needs root, else skipped).

The free-space check refuses a start that cannot fit; a log writer that hits ENOSPC stops the start with
that reason; the error the start ended with is never replaced by the ENOSPC of saving its result.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_coldstart.launch import registry as launch_registry
from pytest_coldstart.measure import runner as runner_module
from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import LogWriteError, PreflightError
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import load_results
from tests.conftest import REPO
from tests.faults.conftest import alive, fake_registry, pids_in


def _mount(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs."""
    mnt = tmp_path / "small"
    if not _mount(mnt, "2m"):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the disk faults cannot be shown here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(launch_registry.LAUNCHERS, "fake", "tests.faults.fake_launcher:FakeLauncher")
    monkeypatch.setenv("FAKE_PID_FILE", str(tmp_path / "pids"))
    return fake_registry(tmp_path / "registry")


def _runner(results: Path, work: Path, registry: Path) -> ColdStartRunner:
    return ColdStartRunner(Settings(registry_dir=registry, results_dir=results, workdir=work, repo_dir=REPO,
                                    timeout_s=30), load_registry(registry))


def test_too_little_free_space_refuses_the_start(small_disk: Path, fake: Path, tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match=r"only \d+ MiB free at .*small"):
        _runner(small_disk / "results", tmp_path / "work", fake).run(Case("fake", "mode_ok", "fake"))
    (result,) = load_results(small_disk / "results")  # a small result still fits: the refusal is on record
    assert str(result.exit_status) == "preflight_failed"
    assert not pids_in(tmp_path / "pids")


def test_a_full_disk_stops_the_start_and_keeps_the_real_error(small_disk: Path, fake: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "RESULTS_RESERVE_BYTES", 0)  # let it start on the small disk
    with pytest.raises(LogWriteError) as caught:
        # mode_chatty writes ~100 KiB/s of log: the 2 MiB fill, then /health would still say ready; it is
        # the log, not the server, that fails, so keep it from getting ready first: hang also never gets ready.
        _runner(small_disk / "results", tmp_path / "work", fake).run(Case("fake", "mode_chatty_hang", "fake"))
    error = caught.value
    assert "could not be written (No space left on device)" in str(error)
    notes = " ".join(getattr(error, "__notes__", []))
    assert "could not be saved" in notes  # the result write failed too, and is only a note on the real error
    assert not [p for p in pids_in(tmp_path / "pids") if alive(p)]
