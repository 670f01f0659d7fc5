"""The Ray Serve LLM launcher (``--launcher ray-serve``): scale-from-zero cold starts.

The launcher runs ``launchers.ray_driver`` as an owned process (own session):
it starts a local Ray (or joins ``--coldstart-ray-address``) and deploys an OpenAI app
whose LLM deployment has ``min_replicas=0, initial_replicas=0`` by default.
"Ready" here means the app answers with zero LLM replicas; the cold start is
the first request: it makes Serve add the replica, and the measured total is
request sent -> first streamed token (``ray_timeline`` splits it into phases).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from pytest_coldstart.launch.base import Launcher, LaunchSpec, ProgressFn, Server, free_port
from pytest_coldstart.launch.options import RAY_SERVE_OPTIONS, parse_replicas
from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.launch.ray_cluster import check_reachable
from pytest_coldstart.launch.ttft import TTFTSample, measure_ttft
from pytest_coldstart.logs.ray import (
    EVENT_PREFIX,
    RAY_PHASE_RULES,
    parse_ray_line,
    ray_events,
    ray_timeline_live,
    stamp_live,
)
from pytest_coldstart.logs.timeline import Timeline
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import LaunchError, ReadinessTimeout, ServerExitedError
from pytest_coldstart.model.redact import Redactor

DRIVER_MODULE = "pytest_coldstart.launch.ray_driver"
APP_NAME = "coldstart"
DEFAULT_REPLICAS = (0, 0, 1)
#: Logical CPUs for a local Ray: 2 cores are too few for proxy, controller,
#: ingress and the LLM replica's CPU bundle (checked on the 2-core CPU lane).
DEFAULT_NUM_CPUS = 8
TRACEBACK_WAIT_S = 1.0
_EXCEPTION_RE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): .+")
DRIVER_STOP_GRACE_S = 60.0
METRICS_WAIT_S = 6.0
_METRICS = {"serve_replica_startup_latency_ms": "replica_startup", "serve_replica_initialization_latency_ms":
            "replica_init"}


class ReplicaFailedError(ServerExitedError):
    """The LLM replica failed while it was starting (the driver is still up)."""


def driver_config(spec: LaunchSpec, metrics_port: int) -> dict[str, Any]:
    """What the driver needs, as JSON. Env var *values* never go in here (they
    may be secrets): the driver copies the named variables from its own env."""
    options = dict(spec.launcher_options)
    low, initial, high = parse_replicas(options.get("ray_replicas", "0,0,1"))
    engine_args = list(spec.engine_args)
    if spec.max_model_len is not None:
        engine_args += ["--max-model-len", str(spec.max_model_len)]
    if spec.tensor_parallel_size != 1:
        engine_args += ["--tensor-parallel-size", str(spec.tensor_parallel_size)]
    address = options.get("ray_address") or None
    extra: dict[str, Any] = {}
    if address and re.match(r"^(?:ray://)?(?:127\.\d+\.\d+\.\d+|localhost):", address):
        # A cluster on loopback (`ray start --head` here, launch.ray_cluster): its nodes share one IP, so one
        # HTTP proxy, on the head; Serve's default (one per node) would make them fight over the port.
        extra["proxy_location"] = "HeadOnly"
    return {**extra, "app_name": APP_NAME, "ray_address": address,
            "num_cpus": int(options.get("ray_num_cpus", DEFAULT_NUM_CPUS)), "metrics_port": metrics_port,
            "host": spec.host, "port": spec.port, "model_ref": spec.model_ref, "served_name": spec.served_name,
            "tensor_parallel_size": spec.tensor_parallel_size, "engine_args": engine_args,
            "min_replicas": low, "initial_replicas": initial, "max_replicas": high,
            "env_var_names": sorted({*spec.env, "PYTHONUNBUFFERED", "VLLM_ENGINE_READY_TIMEOUT_S"})}


def driver_env(spec: LaunchSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    # Ray buffers lines it thinks repeat across processes for up to 5 s and
    # prints them later as "[repeated Nx]": that would shift arrival stamps.
    env["RAY_DEDUP_LOGS"] = "0"
    env.setdefault("VLLM_ENGINE_READY_TIMEOUT_S", str(max(600, int(spec.timeout_s))))
    env.update(spec.env)
    return env


class _RecordingClock:
    """Passes through, remembering the first monotonic reading (request sent)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.first_s: float | None = None

    def monotonic_s(self) -> float:
        now = self.clock.monotonic_s()
        if self.first_s is None:
            self.first_s = now
        return now

    def wall(self) -> Any:
        return self.clock.wall()

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)


class RayServer(Server[OwnedProcess]):
    """The driver process, plus the scale-from-zero first request."""

    starts_on_first_request = True

    def __init__(self, spec: LaunchSpec, process: OwnedProcess, clock: Clock, *, local: bool) -> None:
        super().__init__(spec, process, clock)
        self.local = local
        self.request_sent_s: float | None = None
        self.first_token_s: float | None = None
        self.metrics: dict[str, object] = {}
        self._scanned = 0
        # Epoch seconds minus harness seconds: maps Serve's ms timestamps onto
        # the arrival clock (meaningful only when Ray runs on this machine).
        self.wall_offset_s = clock.wall().timestamp() - clock.monotonic_s() + process.spawn_s

    @property
    def base_url(self) -> str:
        """The Serve proxy: the port we asked for, or on a joined cluster the one Serve reports."""
        url = (self._driver_event("app_ready") or {}).get("url")
        return str(url).rstrip("/") if url and not self.local else self.spec.base_url

    def _driver_event(self, name: str) -> dict[str, Any] | None:
        for line in self.process.lines():
            if line.text.startswith(f"{EVENT_PREFIX} {name}"):
                return parse_ray_line(line.text)[2]
        return None

    def timeline(self) -> Timeline:
        timeline = ray_timeline_live(self.process.lines(), request_sent_s=self.request_sent_s,
                                     first_token_s=self.first_token_s,
                                     wall_offset_s=self.wall_offset_s if self.local else None)
        if self.metrics:
            timeline.reported.update(self.metrics)
        return timeline

    def wait_ready(self, progress: ProgressFn | None = None) -> float:
        """Wait for the driver's ``app_ready``: the app serves, the LLM deployment has 0 replicas."""

        def driver_up() -> None:
            error = self._driver_event("driver_error")
            code = self.process.poll()
            if error is not None or code is not None:
                self.exit_code = code
                detail = (error or {}).get("error") or f"exit code {code}"
                raise self.failure(ServerExitedError, f"Ray Serve driver failed before the app was deployed: {detail}")

        def stage() -> str:
            return f"{'app deploy' if self._driver_event('ray_ready') else 'Ray start'} (before the first request)"

        self.poll_until(lambda: self._driver_event("app_ready") is not None, timeout_s=self.spec.timeout_s,
                        check=driver_up, describe=stage, progress=progress,
                        timeout_summary=lambda: f"Ray Serve app not deployed after {self.spec.timeout_s:.0f} s "
                                                "(--coldstart-timeout)")
        self.ready_s = self.process.elapsed_s()
        return self.ready_s

    def first_token(self, served_name: str, *, timeout_s: float, progress: ProgressFn | None = None) -> TTFTSample:
        """Send the first request (it triggers the replica) and wait for its first token.

        The whole replica start happens inside this request, so it gets the
        cold-start timeout (``--coldstart-timeout``), not the TTFT one. A replica
        that fails while starting ends the wait at once, naming the phase.
        """
        del timeout_s  # the request includes the cold start
        recorder = _RecordingClock(self.clock)
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                outcome["sample"] = measure_ttft(self.base_url, served_name, recorder, timeout_s=self.spec.timeout_s)
            except BaseException as exc:
                outcome["error"] = exc

        def answered() -> bool:
            if recorder.first_s is not None and self.request_sent_s is None:
                self.request_sent_s = recorder.first_s - self.process.spawn_s
            return not thread.is_alive()

        thread = threading.Thread(target=send, name="coldstart-ray-first-request", daemon=True)
        thread.start()
        self.poll_until(answered, timeout_s=self.spec.timeout_s,
                        since_s=self.process.elapsed_s(), progress=progress,
                        describe=lambda: f"scale from zero: {self.phase_in_progress()}",
                        timeout_summary=lambda: f"no first token {self.spec.timeout_s:.0f} s after the first request "
                                                f"(--coldstart-timeout); the replica was in "
                                                f"{self.phase_in_progress()!r}")
        if recorder.first_s is not None:
            self.request_sent_s = recorder.first_s - self.process.spawn_s
        if "error" in outcome:
            self.check_alive()
            exc = outcome["error"]
            raise self.failure(LaunchError, f"the first request failed: {type(exc).__name__}: {exc}")
        sample: TTFTSample = outcome["sample"]
        first = sample.ttft_s if sample.ttft_s is not None else sample.first_response_s
        self.first_token_s = (self.request_sent_s or 0.0) + first
        self.metrics = self._scrape_metrics()
        return sample

    def check_alive(self) -> None:
        """Raise, naming the phase, if the driver died or the LLM replica failed."""
        code = self.process.poll()
        if code is not None:
            self.exit_code = code
            raise self.failure(ServerExitedError, f"Ray Serve driver exited with code {code} during the "
                               f"scale-from-zero start, in phase {self.phase_in_progress()!r}")
        lines = self.process.lines()
        # Only the lines since the last look: this runs every 0.1 s for minutes.
        fresh = stamp_live(lines[self._scanned:], None)
        self._scanned = len(lines)
        if "rayllm_replica_failed" in ray_events(fresh):
            timeline = self.timeline()
            self.clock.sleep(TRACEBACK_WAIT_S)  # the traceback arrives a moment after the first line
            raise self.failure(ReplicaFailedError, f"the LLM replica failed during phase "
                               f"{timeline.phase_in_progress!r} of the scale-from-zero start "
                               f"(last phase completed: {timeline.last_phase_reached or 'none'}): "
                               f"{failure_cause([line.text for line in self.process.lines()])}")

    def failure_hint(self, cls: type[LaunchError], tail: tuple[str, ...]) -> str | None:
        if issubclass(cls, ReadinessTimeout):
            return "raise --coldstart-timeout, or look at the phase that stalled in the log"
        return ("the replica's traceback is in the log (lines prefixed (ServeReplica:...LLMServer...)); "
                "Ray would retry it, the benchmark does not")

    def _scrape_metrics(self) -> dict[str, object]:
        """Ray 2.54+ replica startup histograms for the LLM deployment, if exported."""
        ready = self._driver_event("ray_ready") or {}
        urls = [f"http://{n['ip']}:{n['metrics_port']}/metrics" for n in ready.get("nodes", [])
                if n.get("ip") and n.get("metrics_port")]
        deadline = self.clock.monotonic_s() + METRICS_WAIT_S
        values: dict[str, object] = {}
        with httpx.Client(timeout=2.0) as client:
            while urls and self.clock.monotonic_s() < deadline:
                for url in urls:
                    try:
                        values.update(replica_metrics(client.get(url).text))
                    except httpx.HTTPError:
                        continue
                if values.get("replica_startup_metric_s") is not None:
                    break
                self.clock.sleep(0.5)
        return values

    def stop(self) -> int | None:
        """SIGINT to the driver alone (it runs serve.shutdown and ray.shutdown),
        then the process-group sweep for anything Ray left behind."""
        if self.process.poll() is None:
            # SIGINT, not SIGTERM: Ray's C++ failure-signal handler (absl, installed by
            # ray.init) catches SIGTERM in the driver and the process aborts mid-shutdown.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)
            deadline = self.clock.monotonic_s() + DRIVER_STOP_GRACE_S
            while self.process.poll() is None and self.clock.monotonic_s() < deadline:
                self.clock.sleep(0.2)
        code = super().stop()
        self._append_harness_line()
        return code

    def _append_harness_line(self) -> None:
        """Record request/first-token times in the log so offline parsing has the total."""
        if self.request_sent_s is None:
            return
        data = {"request_sent_epoch_s": round(self.request_sent_s + self.wall_offset_s, 6),
                "first_token_epoch_s": None if self.first_token_s is None
                else round(self.first_token_s + self.wall_offset_s, 6)}
        with self.spec.log_path.open("a", encoding="utf-8") as log:
            log.write(f"{EVENT_PREFIX} harness {json.dumps(data, sort_keys=True)}\n")


def failure_cause(lines: list[str]) -> str:
    """The last ``SomeError: message`` line of the replica's traceback, or a pointer to the log."""
    for text in reversed(lines):
        match = _EXCEPTION_RE.search(parse_ray_line(text)[0].message)
        if match:
            return match.group(0)[:400]
    return "see the replica's traceback in the log"


def replica_metrics(text: str) -> dict[str, object]:
    """Startup/init latency of the LLMServer replica from Prometheus text.

    Ray 2.60 exports these histograms at bucket resolution: ``_sum`` is the
    midpoint of the observation's bucket (152.7 s was exported as 180 s, the
    middle of 120-240 s), so the bucket (lower, upper] is recorded next to it.
    """
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, object] = {}
    for family in text_string_to_metric_families(text):
        key = _METRICS.get(family.name.removeprefix("ray_"))
        if key is None:
            continue
        samples = [s for s in family.samples if s.labels.get("deployment", "").startswith("LLMServer")]
        total = sum(s.value for s in samples if s.name.endswith("_sum"))
        count = sum(s.value for s in samples if s.name.endswith("_count"))
        if not count:
            continue
        values[f"{key}_metric_s"] = round(total / count / 1000.0, 3)
        buckets = sorted((float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket"))
        lower = max((le for le, n in buckets if n == 0), default=0.0)
        upper = min((le for le, n in buckets if n >= count), default=float("inf"))
        values[f"{key}_metric_bucket_s"] = [lower / 1000.0, upper / 1000.0]
    return values


class RayServeLauncher(Launcher):
    kind = "ray-serve"
    phase_rules = RAY_PHASE_RULES
    options = RAY_SERVE_OPTIONS

    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        config = driver_config(spec, free_port())
        if config["ray_address"]:
            # e.g. a `ray start --head` cluster (launch.ray_cluster): fail in seconds, not after Ray's retries.
            check_reachable(str(config["ray_address"]))
        env = driver_env(spec)
        argv = [spec.python, "-m", DRIVER_MODULE, "--config-json", json.dumps(config, sort_keys=True)]
        process = OwnedProcess(argv, env=env, log_path=spec.log_path, clock=clock, redactor=Redactor.from_env(env))
        process.start()
        return RayServer(spec, process, clock, local=config["ray_address"] is None)
