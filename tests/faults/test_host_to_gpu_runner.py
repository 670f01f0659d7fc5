"""The runner hands the page-cache residency of the local weights, taken right before the start, to the load
efficiency (through the real runner, hygiene and OwnedProcess, with the fake server of tests/faults/fake_server.py;
the host->GPU floor itself is tested against recorded H200 answers in tests/unit/test_host_to_gpu_floor.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coldstart.launch import registry as launch_registry
from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.registry import load_registry
from tests.conftest import REPO
from tests.faults.conftest import TINY, fake_registry


def test_a_cold_start_records_its_weights_out_of_the_page_cache(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    if not TINY.is_dir():
        pytest.skip(f"{TINY} not present")
    monkeypatch.setitem(launch_registry.LAUNCHERS, "fake", "tests.faults.fake_launcher:FakeLauncher")
    monkeypatch.setenv("FAKE_PID_FILE", str(tmp_path / "pids"))
    registry = fake_registry(tmp_path / "registry")
    settings = Settings(registry_dir=registry, results_dir=tmp_path / "results", workdir=tmp_path / "work",
                        repo_dir=REPO, timeout_s=30)
    result = ColdStartRunner(settings, load_registry(registry)).run(Case("fake", "mode_ok", "fake"))
    assert result.ok, result.error
    weights = result.cache["page_cache_weights"]
    assert weights["files"] >= 1 and weights["bytes"] >= 1685112  # the safetensors file; not config/tokenizer
    assert weights["resident_bytes"] == 0, "a cold start's weights were evicted right before it"
    assert result.efficiency is not None and result.efficiency.resident_share == 0.0
    # The fake server logs no weight load: nothing to hold to a floor, and no probe was run for it.
    assert result.efficiency.load_s is None and result.efficiency.host_to_gpu is None
    assert "not probed" in result.efficiency.host_to_gpu_note
