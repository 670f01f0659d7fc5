"""Scale-out inputs that must be refused before anything starts (no Ray, no load)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from pytest_coldstart.launch.loadgen import LoadGeneratorError, LoadRequest, bench_argv, prompts_for
from pytest_coldstart.launch.ray_cluster import WORKER_PORTS, _node_ports, _port_pool, check_reachable, parse_nodes
from pytest_coldstart.measure.scaleout import Profile, ScaleoutRun, ScaleoutSettings, Step, check_profile, parse_steps
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.registry import load_registry
from tests.conftest import REPO


def test_steps_parse_and_refuse_garbage():
    assert parse_steps("1:30, 8:40") == (Step(1.0, 30.0), Step(8.0, 40.0))
    for bad in ("", "1", "0:30", "a:b", "1:-5"):
        with pytest.raises(ConfigError, match="RATE:SECONDS"):
            parse_steps(bad)


def test_profile_whose_steps_exceed_the_timeout_is_refused():
    profile = Profile(steps=(Step(1.0, 600.0), Step(4.0, 600.0)))
    with pytest.raises(ConfigError) as err:
        check_profile(profile, timeout_s=1500.0)
    assert "more than the 1500 s timeout" in str(err.value) and "--scaleout-timeout" in str(err.value)
    check_profile(Profile(), timeout_s=1500.0)  # the CPU-lane default fits
    with pytest.raises(ConfigError, match="max replicas >= 2"):
        check_profile(Profile(max_replicas=1), timeout_s=1500.0)


def test_nodes_parse():
    spec = parse_nodes("6,4,4")
    assert spec.head.num_cpus == 6 and [w.num_cpus for w in spec.workers] == [4, 4]
    with pytest.raises(ConfigError, match="e.g. 6,4"):
        parse_nodes("6,x")


def test_cluster_ports_never_collide_across_nodes_or_with_worker_blocks():
    """A real `ray start` refused a node whose object-manager port fell inside its worker block (Ray 2.60):
    every named port and every worker block of a cluster is distinct, free and below the ephemeral range,
    even when every node draws the same random numbers."""
    names = ("gcs", "client", "node-manager-port", "object-manager-port", "metrics-export-port",
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")
    pool = _port_pool()
    for seed in range(40):
        taken: set[int] = set()
        used: list[int] = []
        for _node in range(3):
            ports = _node_ports(names, taken, random.Random(seed))  # the same draws for every node
            block = range(ports["min-worker-port"], ports["max-worker-port"] + 1)
            assert len(block) == WORKER_PORTS
            named = [ports[name] for name in names]
            assert set(named).isdisjoint(block)
            used += [*named, *block]
            assert all(port in pool for port in used)
        assert len(used) == len(set(used)), f"seed {seed}: a port handed out twice"


def test_unreachable_cluster_address_is_named_with_what_to_do():
    with socket.socket() as sock:  # a port nobody listens on: bound, then closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConfigError) as err:
            check_reachable(address, timeout_s=2.0)
        assert "unreachable" in str(err.value) and "ray start --head" in str(err.value)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        check_reachable("nohostport")
    check_reachable("auto")  # Ray resolves it itself


def test_load_generator_missing_is_refused_before_any_start(tmp_path: Path):
    settings = ScaleoutSettings(model="tiny-llama", results_dir=tmp_path / "r", workdir=tmp_path / "w",
                                repo_dir=REPO, registry_dir=REPO / "benchmarks",
                                loadgen_command=("no-such-loadgen-xyz", "bench", "serve"))
    with pytest.raises(LoadGeneratorError) as err:
        ScaleoutRun(settings, load_registry(REPO / "benchmarks")).run()
    assert "'no-such-loadgen-xyz' not found" in str(err.value)
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()  # nothing started, nothing written


def test_bench_argv_is_a_real_vllm_bench_serve_command(tmp_path: Path):
    request = LoadRequest("step-1", prompts_for(8.0, 40.0), 8.0, None, 32, 128, 2.0)
    argv = bench_argv(("vllm", "bench", "serve"), request, base_url="http://127.0.0.1:8000", served_name="tiny",
                      tokenizer="/m", result_dir=tmp_path, result_name="s.json", ready_check_s=60)
    text = " ".join(argv)
    for part in ("--num-prompts 320", "--request-rate 8", "--goodput ttft:2000", "--save-detailed",
                 "--random-output-len 128", "--ignore-eos", "--metric-percentiles 50,95,99"):
        assert part in text, part
    probe = LoadRequest("probe-1r", 24, None, 2, 32, 128, 2.0)
    text = " ".join(bench_argv(("x",), probe, base_url="u", served_name="t", tokenizer="m", result_dir=tmp_path,
                               result_name="p.json", ready_check_s=1))
    assert "--request-rate inf" in text and "--max-concurrency 2" in text


def test_single_start_launcher_on_a_loopback_cluster_keeps_one_proxy():
    from pytest_coldstart.launch.base import LaunchSpec
    from pytest_coldstart.launch.ray_serve import driver_config

    def config(address: str) -> dict:
        spec = LaunchSpec("m", "m", 8000, Path("x.log"), 60.0, launcher_options={"ray_address": address})
        return driver_config(spec, 9000)

    assert config("127.0.0.1:6379")["proxy_location"] == "HeadOnly"  # `ray start --head` on this machine
    assert "proxy_location" not in config("ray://10.0.0.5:10001")  # a real multi-host cluster: Serve's default
    assert "proxy_location" not in config("") and config("")["ray_address"] is None
