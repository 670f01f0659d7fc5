"""Scale-out bad input with real parts: the real load generator failing, a replica that never becomes ready.

The generator test (~30 s: vLLM's import) runs in `make test`; the never-ready run (~7 min: a one-node
cluster whose single replica slot leaves the added replica unschedulable) is marked `scaleout` too.
"""

from __future__ import annotations

import importlib.util
import socket
import sys

import psutil
import pytest

from pytest_coldstart.launch.loadgen import LoadGeneratorError, LoadRequest, default_command, run_load
from pytest_coldstart.launch.ray_cluster import ClusterSpec, NodeSpec
from pytest_coldstart.measure.scaleout import Profile, ReplicaNeverReady, ScaleoutRun, ScaleoutSettings, Step
from pytest_coldstart.model.clock import SystemClock
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.scaleout import load_scaleouts
from tests.conftest import REPO, requires_vllm

requires_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                  reason="ray[serve] is not installed (extra `ray`)")
pytestmark = [pytest.mark.integration, requires_vllm]
TINY = REPO / ".coldstart" / "models" / "tiny-llama"


def test_real_load_generator_failing_shows_its_own_error(tmp_path):
    with socket.socket() as sock:  # nothing listens here
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    request = LoadRequest("step-1", 4, 1.0, None, 8, 8, 2.0)
    with pytest.raises(LoadGeneratorError) as err:
        run_load(request, command=default_command(sys.executable), base_url=f"http://127.0.0.1:{port}",
                 served_name="tiny-llama", tokenizer=str(TINY), work_dir=tmp_path, env={"PYTHONUNBUFFERED": "1",
                 "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, clock=SystemClock(), timeout_s=300)
    message = str(err.value)
    assert "load generator failed in step 'step-1' (exit code 1)" in message, message
    # vLLM bench's own last error line, and its log, not a traceback of ours.
    assert "Error" in message.splitlines()[0] and (tmp_path / "step-1.log").is_file()
    assert "full log:" in message


@pytest.mark.scaleout
@requires_ray
@pytest.mark.timeout(1200)
def test_replica_that_never_becomes_ready_stops_the_load_cleanly(tmp_path):
    # One node, one replica slot: Serve decides to add the second replica but cannot place it.
    settings = ScaleoutSettings(
        model="tiny-llama", results_dir=tmp_path / "results", workdir=tmp_path / "work", repo_dir=REPO,
        registry_dir=REPO / "benchmarks", cluster=ClusterSpec(head=NodeSpec(num_cpus=6), workers=()),
        profile=Profile(steps=(Step(8.0, 30.0),), hold_step_s=30.0, hold_max_steps=6), replica_timeout_s=200.0,
        timeout_s=1100.0)
    with pytest.raises(ReplicaNeverReady) as err:
        ScaleoutRun(settings, load_registry(REPO / "benchmarks")).run()
    message = str(err.value)
    assert "load stopped cleanly: load step" in message and "not serving" in message, message
    assert "last phase reached: replica_scheduling" in message or "in phase 'replica_scheduling'" in message
    assert "--- last 20 log lines ---" in message
    [result] = load_scaleouts(settings.results_dir)
    assert result.exit_status == "error" and "ReplicaNeverReady" in result.error
    assert result.ray_processes_left == () and result.max_replicas_reached == 1
    assert result.replicas[1].first_request_s is None and result.replica_add_s is None
    assert not [p for p in psutil.process_iter(["cmdline"]) if result.cluster["address"] in
                " ".join(p.info["cmdline"] or ())]
