"""Ray Serve LLM scale-from-zero phases, live and offline.

A Ray cold start is measured from the first request (sent while the LLM
deployment has 0 replicas) to its first streamed token. Phases, in order:

* ``ingress_scale_up`` (optional): Ray 2.57+ also scales the ``OpenAiIngress``
  to zero when every model may; the request first waits for an ingress replica.
* ``autoscale`` (optional): until the controller adds the LLM replica
  (``Upscaling ... from 0 to 1`` / ``Adding 1 replica to ...LLMServer``).
* ``replica_scheduling``: placement group, actor and worker process start, until
  the replica's first line (``ServeReplica:<app>:LLMServer...`` prefix).
* ``replica_init``: imports, ``LLMServer`` constructor, Ray LLM node init
  (model-file download tasks, engine config) until vLLM initialises its engine.
* the vLLM engine phases of ``timeline.PHASE_RULES`` (same markers, same parser).
* ``engine_start``: vLLM front-end state until Ray logs ``Started vLLM engine.``.
* ``replica_ready`` (optional): reconfigure + first health check until the
  controller logs ``... started successfully ...`` (or ``serve.status()`` says RUNNING).
* ``first_token``: routing, prefill and the first streamed token.

Phases never overlap, so phases + unaccounted add up to the first-token time
(``Timeline.total_ready_s`` here). Sequence and messages: Ray 2.60
``serve/_private/deployment_state.py`` and ``llm/_internal/serve`` (see
shared/research/vllm-phases.md section 6.2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pytest_coldstart.logs.grammar import (
    SERVE_ADDING_RE,
    SERVE_FAILED_RE,
    SERVE_INIT_RE,
    SERVE_SCALE_RE,
    SERVE_STARTED_RE,
    LogRecord,
    is_llm_deployment,
    offline_times,
    parse_line,
)
from pytest_coldstart.logs.timeline import (
    PHASE_RULES,
    SOURCE_ARRIVAL,
    SOURCE_LOG,
    PhaseRule,
    StampedLine,
    Timeline,
    build_timeline,
)

#: Lines the driver prints itself: ``[coldstart-ray] EVENT {json}``.
EVENT_PREFIX = "[coldstart-ray]"
#: Lines the driver copies from Serve's log files (Serve logs them with
#: ``log_to_stderr=False``, so ``log_to_driver`` never sends them).
SERVE_LOG_PREFIX = "[serve-log]"

_VLLM_ENGINE_PHASES = ("engine_init", "weights_download", "weights_load", "torch_compile", "memory_profiling",
                       "kv_cache", "cuda_graphs", "warmup")
_LLM_ADDED = ("rayllm_llm_adding", "rayllm_llm_upscale", "rayllm_status_starting")

RAY_PHASE_RULES: tuple[PhaseRule, ...] = (
    PhaseRule("ingress_scale_up", ("rayllm_ingress_ready",), ("spawn",), optional=True,
              description="the OpenAiIngress itself scales from zero (Ray 2.57+) and takes the request"),
    PhaseRule("autoscale", _LLM_ADDED, ("spawn",), optional=True,
              description="the Serve controller decides to add the LLM replica"),
    PhaseRule("replica_scheduling", ("rayllm_replica_alive",), (*_LLM_ADDED, "spawn"),
              reported_keys=("replica_scheduling_reported_s",),
              description="placement group, actor and worker process start until the replica's first line"),
    PhaseRule("replica_init", ("engine_init",), ("rayllm_replica_alive",),
              description="replica imports, LLMServer constructor, Ray LLM node init, engine config"),
    *(rule for rule in PHASE_RULES if rule.name in _VLLM_ENGINE_PHASES),
    # vLLM's init_app_state logs "Supported tasks: [...]" just before Ray's line;
    # the H100 console captures (Ray 2.5x) have only the former.
    PhaseRule("engine_start", ("ray_engine_started", "rayllm_supported_tasks"),
              description="vLLM front-end state in the replica until Ray logs 'Started vLLM engine.'"),
    PhaseRule("replica_ready", ("rayllm_replica_started", "rayllm_status_running"), optional=True,
              description="reconfigure and first health check until the controller marks the replica RUNNING"),
    PhaseRule("first_token", ("health_ok",), description="routing, prefill and the first streamed token"),
)
RAY_PHASE_NAMES: tuple[str, ...] = tuple(rule.name for rule in RAY_PHASE_RULES)

#: Ray-side values added to ``Timeline.reported`` (seconds unless named otherwise).
RAY_REPORTED_KEYS: tuple[str, ...] = (
    "ray_version", "driver_start_s", "ray_init_s", "app_deploy_s", "replica_startup_reported_s",
    "replica_init_reported_s", "replica_scheduling_reported_s", "ingress_startup_reported_s",
    "replica_startup_log_s", "replica_init_log_s", "node_init_s", "replica_startup_metric_s",
    "replica_init_metric_s", "replica_startup_metric_bucket_s", "replica_init_metric_bucket_s",
)

_SERVE_TS_RE = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_SUPPORTED_RE = re.compile(r"Supported[ _]tasks: ")


@dataclass(frozen=True)
class RayLine:
    """One driver output line: parsed record, driver event, and its best time."""

    t_s: float
    record: LogRecord
    event: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


_is_llm = is_llm_deployment


def _llm_replica(record: LogRecord) -> bool:
    return any(p.startswith("ServeReplica:") and ":LLMServer" in p for p in record.processes)


def serve_timestamp(message: str) -> datetime | None:
    """Serve's own ``YYYY-MM-DD HH:MM:SS,mmm`` (local time), if the line has one."""
    match = _SERVE_TS_RE.match(message)
    return datetime.strptime(match.group("ts"), "%Y-%m-%d %H:%M:%S,%f") if match else None


def parse_ray_line(text: str) -> tuple[LogRecord, str | None, dict[str, Any]]:
    """Core parse, plus the driver's event name and payload for ``[coldstart-ray]`` lines."""
    if text.startswith(SERVE_LOG_PREFIX):
        text = text[len(SERVE_LOG_PREFIX):].lstrip()
    record = parse_line(text)
    if record.message.startswith(EVENT_PREFIX):
        name, _, payload = record.message[len(EVENT_PREFIX):].strip().partition(" ")
        try:
            data = json.loads(payload) if payload else {}
        except ValueError:
            data = {}
        return record, name, data if isinstance(data, dict) else {}
    return record, None, {}


def stamp_live(lines: Sequence[StampedLine], wall_offset_s: float | None) -> list[RayLine]:
    """Arrival stamps, replaced by Serve's own ms timestamps where a line has one.

    ``wall_offset_s`` = epoch seconds minus harness seconds (same clock, so only
    for a local Ray); Ray's log monitor delivers worker lines 0.1-0.5 s late, and
    the controller's ``started successfully`` comes from a polled file.
    """
    out = []
    for line in lines:
        record, event, data = parse_ray_line(line.text)
        t_s = line.t_s
        ts = serve_timestamp(record.message)
        if ts is not None and wall_offset_s is not None:
            t_s = ts.timestamp() - wall_offset_s
        out.append(RayLine(t_s, record, event, data))
    return out


def _replica_states(data: dict[str, Any]) -> tuple[dict[str, int], dict[str, int], str]:
    llm: dict[str, int] = {}
    ingress: dict[str, int] = {}
    message = ""
    for name, dep in (data.get("deployments") or {}).items():
        target = llm if _is_llm(name) else ingress
        for state, count in (dep.get("replicas") or {}).items():
            target[state] = target.get(state, 0) + int(count)
        if _is_llm(name):
            message = str(dep.get("message") or "")
            if dep.get("status") in ("DEPLOY_FAILED", "UNHEALTHY"):
                message = message or str(dep.get("status"))
    return llm, ingress, message


def ray_events(lines: Iterable[RayLine]) -> dict[str, tuple[float, dict[str, str]]]:
    """The earliest occurrence of every Ray milestone in *lines*."""
    found: dict[str, tuple[float, dict[str, str]]] = {}

    def hit(name: str, t_s: float, groups: dict[str, str] | None = None) -> None:
        if name not in found or t_s < found[name][0]:
            found[name] = (t_s, groups or {})

    for line in lines:
        t_s, msg = line.t_s, line.record.message
        if line.event is not None:
            hit(f"driver_{line.event}", t_s)
            if line.event == "status":
                llm, ingress, message = _replica_states(line.data)
                if llm.get("STARTING"):
                    hit("rayllm_status_starting", t_s)
                if llm.get("RUNNING"):
                    hit("rayllm_status_running", t_s)
                if ingress.get("RUNNING"):
                    hit("rayllm_ingress_status_running", t_s)
                if message.startswith("A replica failed to start") or message in ("DEPLOY_FAILED", "UNHEALTHY"):
                    hit("rayllm_replica_failed", t_s, {"message": message})
            continue
        if _llm_replica(line.record):
            hit("rayllm_replica_alive", t_s)
        init = SERVE_INIT_RE.search(msg)
        if init and "LLMServer" in init.group("component"):
            hit("rayllm_replica_alive", t_s)
        adding = SERVE_ADDING_RE.search(msg)
        if adding:
            hit(f"rayllm_{'llm' if _is_llm(adding.group('dep')) else 'ingress'}_adding", t_s)
        scale = SERVE_SCALE_RE.search(msg)
        if scale and scale.group("verb") == "Upscaling" and scale.group("old") == "0":  # a scale from zero
            hit(f"rayllm_{'llm' if _is_llm(scale.group('dep')) else 'ingress'}_upscale", t_s)
        started = SERVE_STARTED_RE.search(msg)
        if started:
            groups = {k: v for k in ("e2e", "init") if (v := started.group(k)) is not None}
            hit("rayllm_replica_started" if _is_llm(started.group("dep")) else "rayllm_ingress_started", t_s, groups)
        failed = SERVE_FAILED_RE.search(msg)
        if failed and _is_llm(failed.group("dep")):
            hit("rayllm_replica_failed", t_s, {"message": msg})
        if "Running tasks to download model files" in msg:
            hit("rayllm_node_init_start", t_s)
        if "Using executor class" in msg:
            hit("rayllm_executor_chosen", t_s)
        if _llm_replica(line.record) and _SUPPORTED_RE.search(msg):
            hit("rayllm_supported_tasks", t_s)
    # The ingress phase exists only when the ingress itself started from zero.
    if "rayllm_ingress_adding" in found or "rayllm_ingress_upscale" in found:
        ready = [found[n][0] for n in ("rayllm_ingress_started", "rayllm_ingress_status_running") if n in found]
        if ready:
            found["rayllm_ingress_ready"] = (min(ready), {})
    return found


def _span(events: dict[str, tuple[float, dict[str, str]]], start: Sequence[str], end: str) -> float | None:
    """End minus the first of *start* (in preference order) that was seen."""
    begin = next((events[n][0] for n in start if n in events), None)
    if begin is None or end not in events or events[end][0] < begin:
        return None
    return round(events[end][0] - begin, 6)


def ray_reported(after: dict[str, tuple[float, dict[str, str]]],
                 before: dict[str, tuple[float, dict[str, str]]] | None = None,
                 ray_version: str | None = None) -> dict[str, object]:
    """Ray-side figures: the controller's own numbers next to the log-derived ones."""
    values: dict[str, object] = dict.fromkeys(RAY_REPORTED_KEYS)
    values["ray_version"] = ray_version
    if before:
        values["driver_start_s"] = _span(before, ("spawn",), "driver_ray_init_start")
        values["ray_init_s"] = _span(before, ("driver_ray_init_start",), "driver_ray_ready")
        values["app_deploy_s"] = _span(before, ("driver_app_deploy_start",), "driver_app_ready")
    started = after.get("rayllm_replica_started")
    if started:
        e2e, init = started[1].get("e2e"), started[1].get("init")
        values["replica_startup_reported_s"] = float(e2e) if e2e else None
        values["replica_init_reported_s"] = float(init) if init else None
        if e2e and init:
            values["replica_scheduling_reported_s"] = round(float(e2e) - float(init), 3)
    ingress = after.get("rayllm_ingress_started")
    if ingress and ("rayllm_ingress_adding" in after or "rayllm_ingress_upscale" in after):
        values["ingress_startup_reported_s"] = float(ingress[1]["e2e"]) if ingress[1].get("e2e") else None
    values["replica_startup_log_s"] = _span(after, _LLM_ADDED, "rayllm_replica_started")
    values["replica_init_log_s"] = _span(after, ("rayllm_replica_alive",), "rayllm_replica_started")
    values["node_init_s"] = _span(after, ("rayllm_node_init_start",), "rayllm_executor_chosen")
    return values


def _with_ray(timeline: Timeline, reported: dict[str, object], events: dict[str, Any]) -> Timeline:
    merged = {**timeline.reported, **{k: v for k, v in reported.items()}}
    return replace(timeline, reported=merged, started_phase=_in_progress(timeline, events))


def _in_progress(timeline: Timeline, events: dict[str, Any]) -> str:
    """What the scale-from-zero start is doing now (the error names it on a crash).

    The core's ``started_phase`` counts only for engine phases with their own
    start marker (torch.compile): Ray's first phases all start at the request.
    """
    if timeline.started_phase in _VLLM_ENGINE_PHASES:
        return timeline.started_phase
    last = timeline.last_phase_reached
    if last in (None, "ingress_scale_up", "autoscale"):
        if "rayllm_replica_alive" in events:
            return "replica_init"
        if any(n in events for n in _LLM_ADDED):
            return "replica_scheduling"
        if last is None and ("rayllm_ingress_adding" in events or "rayllm_ingress_upscale" in events):
            return "ingress_scale_up"
        return "autoscale"
    later = [r.name for r in RAY_PHASE_RULES[RAY_PHASE_NAMES.index(last) + 1:] if not r.optional]
    return later[0] if later else "first_token"


def ray_timeline_live(lines: Sequence[StampedLine], *, request_sent_s: float | None,
                      first_token_s: float | None, wall_offset_s: float | None = None) -> Timeline:
    """Live Ray timeline: t = 0 when the first request was sent (harness clock).

    Before the request is sent (``request_sent_s is None``) every phase is not
    observed yet; the pre-request figures (Ray start, app deploy) are reported.
    """
    stamped = stamp_live(lines, wall_offset_s)
    origin = request_sent_s if request_sent_s is not None else float("inf")
    before = ray_events(line for line in stamped if line.t_s < origin)
    before["spawn"] = (0.0, {})
    version = next((str(line.data.get("ray_version")) for line in stamped if line.event == "ray_ready"), None)
    if request_sent_s is None:
        timeline = build_timeline([], source=SOURCE_ARRIVAL, rules=RAY_PHASE_RULES)
        return _with_ray(timeline, ray_reported({}, before, version), {})
    until = first_token_s if first_token_s is not None else float("inf")
    after_lines = [replace(line, t_s=line.t_s - origin) for line in stamped if origin <= line.t_s <= until]
    after = ray_events(after_lines)
    ready_s = None if first_token_s is None else first_token_s - origin
    timeline = build_timeline([(line.t_s, line.record) for line in after_lines if line.event is None],
                              source=SOURCE_ARRIVAL, spawn_s=0.0, ready_s=ready_s, rules=RAY_PHASE_RULES,
                              extra_events={k: [v] for k, v in after.items()})
    return _with_ray(timeline, ray_reported(after, before, version), after)


def ray_timeline_from_log(text: str) -> Timeline:
    """Offline Ray timeline from a saved driver log, on the log's own timestamps.

    A log saved by the ``ray-serve`` launcher ends with a ``harness`` line giving
    when the request was sent and the first token came (epoch seconds): then
    t = 0 is the request and the total is the first-token time. Other logs
    (e.g. a console capture) start at their earliest timestamp and have no total.
    """
    parsed = [parse_ray_line(raw) for raw in text.splitlines()]
    times = [None if ts is None else ts.timestamp()
             for ts in offline_times([record for record, _, _ in parsed], lambda r: serve_timestamp(r.message))]
    harness = next((data for _, event, data in parsed if event == "harness"), {})
    request = harness.get("request_sent_epoch_s")
    first = harness.get("first_token_epoch_s")
    stamped = [RayLine(t, record, event, data) for t, (record, event, data) in zip(times, parsed, strict=True) if t is not None]
    if not stamped:
        return build_timeline([], source=SOURCE_LOG, rules=RAY_PHASE_RULES)
    origin = float(request) if isinstance(request, (int, float)) else min(line.t_s for line in stamped)
    until = float(first) if isinstance(first, (int, float)) else float("inf")
    after_lines = [replace(line, t_s=line.t_s - origin) for line in stamped if origin <= line.t_s <= until]
    after = ray_events(after_lines)
    timeline = build_timeline([(line.t_s, line.record) for line in after_lines if line.event is None],
                              source=SOURCE_LOG, spawn_s=0.0 if request is not None else None,
                              ready_s=None if first is None or request is None else until - origin,
                              rules=RAY_PHASE_RULES, extra_events={k: [v] for k, v in after.items()})
    version = next((str(d.get("ray_version")) for _, e, d in parsed if e == "ray_ready"), None)
    return _with_ray(timeline, ray_reported(after, None, version), after)


def looks_like_ray_log(text: str) -> bool:
    """True for Ray Serve LLM output (replica prefixes or our driver's events)."""
    return EVENT_PREFIX in text or "ServeReplica:" in text
