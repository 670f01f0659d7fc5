"""A real scale-out run of the tiny model: `pytest benchmarks -m scaleout --model tiny-llama`, as a user runs it.

Two-node local Ray cluster (`ray start --head` + `ray start --address`), Ray Serve LLM autoscaling 1 -> 2
under `vllm bench serve` stair steps. ~10 min on 2 cores, so it is marked `scaleout` and deselected by
default (pyproject addopts); `make test-scaleout` runs it.
"""

from __future__ import annotations

import importlib.util
import json

import psutil
import pytest

from pytest_coldstart.history.asv_store import load_commit
from pytest_coldstart.model.scaleout import load_scaleouts
from tests.conftest import requires_vllm, run_bench

requires_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                  reason="ray[serve] is not installed (extra `ray`)")
pytestmark = [pytest.mark.integration, pytest.mark.scaleout, requires_vllm, requires_ray, pytest.mark.timeout(2700)]


def _our_ray_processes(marks: list[str]) -> list[str]:
    left = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(m in cmd for m in marks):
            left.append(f"{proc.pid} {cmd[:100]}")
    return left


def test_scale_out_from_one_to_two_replicas_under_load(tmp_path):
    asv_dir = tmp_path / "asv"
    run = run_bench(tmp_path / "results", "-m", "scaleout", "--model", "tiny-llama",
                    f"--coldstart-workdir={tmp_path / 'work'}", f"--coldstart-asv={asv_dir}", timeout_s=2400)
    assert run.returncode == 0, run.output[-6000:]
    [result] = load_scaleouts(tmp_path / "results")
    assert result.exit_status == "ok" and result.max_replicas_reached == 2
    # Replicas on different nodes of a two-node cluster, and nothing of it left.
    assert result.cluster["nodes"] == ["head", "worker1"] and len(result.cluster["replica_nodes"]) == 2
    assert result.ray_processes_left == ()
    assert _our_ray_processes([result.cluster["address"], "/tmp/csray-"]) == []
    # The added replica: decision -> first request served, with its phases adding up.
    added = result.added_replica
    assert added is not None and added.replica_add_s > 0 and added.cause == "autoscaler"
    assert result.replicas[0].cause == "deployment"
    observed = {p.name: p.duration_s for p in added.phases if p.duration_s is not None}
    for name in ("autoscale", "replica_scheduling", "replica_init", "engine_init", "engine_start", "first_token"):
        assert name in observed, f"{name} not observed"
    assert sum(observed.values()) + added.unaccounted_s == pytest.approx(added.replica_add_s, abs=0.01)
    # Throughput at 1 and 2 replicas, TTFT percentiles per step.
    assert set(result.throughput_by_replicas) == {"1", "2"} and result.scaling_efficiency is not None
    steps = [s for s in result.steps if s.kind == "step"]
    assert len(steps) >= 2 and all(s.ttft_p50_s <= s.ttft_p95_s <= s.ttft_p99_s for s in steps)
    assert all(s.completed > 0 for s in steps)
    assert (tmp_path / "results" / "scaleout" / f"{result.run_id}.png").stat().st_size > 10_000
    # The asv series, read back the way `coldstart compare` reads a commit.
    bench = json.loads((asv_dir / "benchmarks.json").read_text())
    assert {"scaleout.replica_add_s", "scaleout.ttft_p95_scaleout_s", "scaleout.s_per_request_2r"} <= set(bench)
    [machine] = [p.parent.name for p in asv_dir.glob("*/machine.json")]
    [recorded] = (asv_dir / machine).glob("*-coldstart-scaleout.json")
    samples = load_commit(asv_dir, recorded.name.split("-")[0], machine)
    case = next(c for k, c in samples.cases.items() if k.optimization == "scaleout")
    assert case.values("replica_add_s") == (added.replica_add_s,)


def test_single_start_ray_launcher_joins_a_local_two_node_cluster(tmp_path):
    """`--launcher ray-serve --coldstart-ray-address 127.0.0.1:PORT` against `ray start --head` + a worker (~3.5 min)."""
    from pytest_coldstart.launch.ray_cluster import ClusterSpec, LocalRayCluster
    from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
    from pytest_coldstart.model.clock import SystemClock
    from pytest_coldstart.model.registry import load_registry
    from tests.conftest import REPO

    cluster = LocalRayCluster(ClusterSpec(), tmp_path / "cluster", SystemClock())
    with cluster:
        settings = Settings(registry_dir=REPO / "benchmarks", results_dir=tmp_path / "results",
                            workdir=tmp_path / "work", repo_dir=REPO, timeout_s=600,
                            launcher_options=(("ray_address", cluster.address), ("ray_replicas", "0,0,1")))
        result = ColdStartRunner(settings, load_registry(REPO / "benchmarks")).run(
            Case("tiny-llama", "baseline", "ray-serve"))
    assert result.ok and result.ttft_s is not None
    assert cluster.leftover == [] and _our_ray_processes([cluster.address, str(cluster.root)]) == []
