"""Probe events (``logs.vllm_plugin``) merged into a timeline: phase edges, sub-phases, agreement.

The probe appends one JSON line per wrapped vLLM step; here they become

* phase edges: where a step's start or end *is* a phase boundary, it replaces
  the log line that stood for it (``source: "plugin"``): the log line is
  stamped on arrival, the step by the process that ran it;
* sub-phases of ``config`` and ``engine_init``: every instant of the parent is
  given to the innermost step running then (or ``other``), so the sub-phases
  sum to their parent exactly;
* ``phase_agreement``: where the probe, the log lines and vLLM's self-reports
  measure the same thing and differ by more than max(0.1 s, 3 %).

Pure: no clock and no I/O except ``read_events``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_coldstart.logs.timeline import PHASE_RULES, PhaseRule, StampedLine, Timeline, timeline_from_stamped
from pytest_coldstart.logs.vllm_plugin import ENV_EVENTS_FILE
from pytest_coldstart.model.phase import SOURCE_PLUGIN, Phase

__all__ = ["ENV_EVENTS_FILE", "Disagreement", "MergedTimeline", "ProbeEvent", "ProbeReport", "merge_timeline",
           "parse_events", "phase_agreement", "plugin_markers", "plugin_rules", "read_events", "sub_phases"]

#: Phases split into sub-phases (the two big opaque ones on the CPU lane).
SPLIT_PHASES: tuple[str, ...] = ("config", "engine_init")
#: Disagreement threshold: max(ABS_S, REL * reference).
AGREEMENT_ABS_S = 0.1
AGREEMENT_REL = 0.03
OTHER = "other"


@dataclass(frozen=True)
class ProbeEvent:
    """One timed step, in seconds since spawn (the harness's monotonic clock; CLOCK_MONOTONIC is system-wide)."""

    step: str
    process: str
    pid: int
    start_s: float
    end_s: float
    rank: int | None = None
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def label(self, api_pid: int | None = None) -> str:
        """The sub-phase name: every process has its own ``imports``, so name whose."""
        if self.step != "imports":
            return self.step
        if self.pid == api_pid:
            return "imports:api_server"
        # vLLM 0.32 inspects the model architecture in a fresh `python -c` subprocess (models/registry.py).
        return "imports:subprocess" if self.process == "main" else f"imports:{self.process}"


@dataclass(frozen=True)
class ProbeReport:
    """What the probe file held: the events, and the targets it could not find (fell back to logs)."""

    events: tuple[ProbeEvent, ...]
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Disagreement:
    """Two measurements of one thing that differ by more than the threshold."""

    name: str
    plugin_s: float
    other_s: float
    other: str  # "log" (phase from log lines) or "reported" (vLLM's own figure)

    @property
    def diff_s(self) -> float:
        return round(self.plugin_s - self.other_s, 6)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "plugin_s": self.plugin_s, "other_s": self.other_s, "other": self.other,
                "diff_s": self.diff_s}


def parse_events(lines: Iterable[str], spawn_mono_s: float) -> ProbeReport:
    """Events from the probe's JSON lines; a torn or foreign line is skipped, never fatal."""
    events: list[ProbeEvent] = []
    missing: list[str] = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if data.get("kind") == "missing":
            target = str(data.get("target"))
            if target not in missing:
                missing.append(target)
            continue
        try:
            events.append(ProbeEvent(str(data["step"]), str(data.get("process", "?")), int(data["pid"]),
                                     round(float(data["mono_start"]) - spawn_mono_s, 6),
                                     round(float(data["mono_end"]) - spawn_mono_s, 6),
                                     data.get("rank"), data.get("error")))
        except (KeyError, TypeError, ValueError):
            continue
    return ProbeReport(tuple(sorted(events, key=lambda e: (e.start_s, e.end_s))), tuple(missing))


def read_events(path: Path, spawn_mono_s: float) -> ProbeReport:
    """``parse_events`` on a file; no file (probe not installed or inert) is an empty report."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ProbeReport(())
    return parse_events(text.splitlines(), spawn_mono_s)


def _steps(events: Sequence[ProbeEvent], step: str, pid: int | None = None) -> list[ProbeEvent]:
    return [e for e in events if e.step == step and e.error is None and (pid is None or e.pid == pid)]


#: phase -> the probe marker that ends it (put ahead of the log markers in that phase's rule).
PLUGIN_ENDS: dict[str, str] = {
    "imports": "plugin_imports_done",
    "config": "plugin_engine_core_init",
    "engine_init": "plugin_load_start",
    "weights_load": "plugin_load_done",
}


def plugin_markers(events: Sequence[ProbeEvent], api_pid: int) -> dict[str, list[tuple[float, dict[str, str]]]]:
    """Phase edges the probe timed, as extra timeline events (same time base as the log lines)."""
    markers: dict[str, list[tuple[float, dict[str, str]]]] = {}
    imports = _steps(events, "imports", api_pid)
    if imports:  # the API server's imports end where vLLM first loads plugins (arg parsing)
        markers["plugin_imports_done"] = [(imports[0].end_s, {})]
    # The log's edge is "Initializing a V1 LLM engine", logged first thing in EngineCore.__init__, right
    # after it loads plugins: the end of EngineCore's "imports" (vLLM 0.32 core.py). EngineCore.__init__
    # itself is already running when the probe registers, so it is never wrapped in its own process.
    core = [e.end_s for e in _steps(events, "imports") if e.process.startswith("EngineCore")]
    core += [e.start_s for e in _steps(events, "engine_core_init")]
    if core:
        markers["plugin_engine_core_init"] = [(min(core), {})]
    loads = _steps(events, "load_model")
    if loads:  # the slowest rank gates each edge, as with the log markers
        markers["plugin_load_start"] = [(e.start_s, {}) for e in loads]
        markers["plugin_load_done"] = [(e.end_s, {}) for e in loads]
    return markers


def plugin_rules(rules: Sequence[PhaseRule] = PHASE_RULES) -> tuple[PhaseRule, ...]:
    """*rules* with the probe's edge first in each phase's end markers (the log markers stay as fallback)."""
    out = []
    for rule in rules:
        if rule.name in PLUGIN_ENDS:
            rule = replace(rule, ends=(PLUGIN_ENDS[rule.name], *rule.ends))
        if rule.name == "config":  # starts where the probe's imports end, not at the first log line (an import warning)
            rule = replace(rule, starts=())
        out.append(rule)
    return tuple(out)


def sub_phases(parent: Phase, events: Sequence[ProbeEvent], api_pid: int | None = None) -> tuple[Phase, ...]:
    """Split *parent* by the steps running inside it; the parts sum to the parent.

    Each instant goes to the shortest step covering it (the innermost: the HF
    config inside the engine config), an instant no step covers to ``other``;
    parts with one name are summed, in order of first appearance.
    """
    if parent.start_s is None or parent.end_s is None or parent.duration_s is None:
        return ()
    lo, hi = parent.start_s, parent.end_s
    inside = [e for e in events if e.end_s > lo and e.start_s < hi]
    cuts = sorted({lo, hi, *(min(max(t, lo), hi) for e in inside for t in (e.start_s, e.end_s))})
    totals: dict[str, list[float]] = {}  # label -> [duration, first start, last end]
    for a, b in zip(cuts, cuts[1:], strict=False):
        if b <= a:
            continue
        covering = [e for e in inside if e.start_s <= a and e.end_s >= b]
        label = min(covering, key=lambda e: (e.duration_s, e.start_s)).label(api_pid) if covering else OTHER
        slot = totals.setdefault(label, [0.0, a, b])
        slot[0] += b - a
        slot[2] = b
    parts = [Phase(label, round(first, 6), round(last, 6), round(total, 6), SOURCE_PLUGIN)
             for label, (total, first, last) in totals.items()]
    if parts:  # rounding: make the parts sum to the parent to the microsecond
        drift = round(parent.duration_s - sum(p.duration_s or 0.0 for p in parts), 6)
        biggest = max(range(len(parts)), key=lambda i: parts[i].duration_s or 0.0)
        parts[biggest] = replace(parts[biggest], duration_s=round((parts[biggest].duration_s or 0.0) + drift, 6))
    return tuple(parts)


def _disagrees(a: float, b: float) -> bool:
    return abs(a - b) > max(AGREEMENT_ABS_S, AGREEMENT_REL * max(abs(a), abs(b)))


#: probe step -> vLLM's self-reported figure of the same interval (vLLM 0.32: ``Model loading took``
#: times ``Worker.load_model``; ``init engine ... took`` times ``EngineCore._initialize_kv_caches``).
STEP_REPORTED: dict[str, str] = {"load_model": "model_load_s", "kv_cache_init": "init_engine_s"}


def phase_agreement(plugin: Timeline, log: Timeline, events: Sequence[ProbeEvent],
                    reported: Mapping[str, object]) -> tuple[Disagreement, ...]:
    """Disagreements over max(0.1 s, 3 %): probe-edged phases vs the same phases from log lines,
    and probe steps vs vLLM's self-reported durations."""
    found: list[Disagreement] = []
    by_name = {p.name: p for p in log.phases}
    for phase in plugin.phases:
        other = by_name.get(phase.name)
        if phase.source != SOURCE_PLUGIN or other is None or phase.duration_s is None or other.duration_s is None:
            continue
        if _disagrees(phase.duration_s, other.duration_s):
            found.append(Disagreement(phase.name, phase.duration_s, other.duration_s, "log"))
    for step, key in STEP_REPORTED.items():
        value = reported.get(key)
        timed = _steps(events, step)
        if not timed or not isinstance(value, int | float):
            continue
        slowest = round(max(e.duration_s for e in timed), 6)
        if _disagrees(slowest, float(value)):
            found.append(Disagreement(step, slowest, float(value), "reported"))
    return tuple(found)


@dataclass(frozen=True)
class MergedTimeline:
    """The timeline with probe edges, the log-only one beside it, and what the probe added."""

    timeline: Timeline
    log_timeline: Timeline
    sub_phases: dict[str, tuple[Phase, ...]]
    agreement: tuple[Disagreement, ...]
    probe: ProbeReport


def merge_timeline(lines: Sequence[StampedLine], *, ready_s: float | None, probe: ProbeReport,
                   api_pid: int) -> MergedTimeline:
    """Phases from log lines with the probe's edges and sub-phases (no events: the log timeline as is)."""
    log = timeline_from_stamped(lines, ready_s=ready_s)
    if not probe.events:
        return MergedTimeline(log, log, {}, (), probe)
    markers = plugin_markers(probe.events, api_pid)
    merged = timeline_from_stamped(lines, ready_s=ready_s, rules=plugin_rules(), extra_events=markers,
                                   plugin_events=frozenset(markers))
    subs = {p.name: sub_phases(p, probe.events, api_pid) for p in merged.phases if p.name in SPLIT_PHASES and p.observed}
    return MergedTimeline(merged, log, {k: v for k, v in subs.items() if v},
                          phase_agreement(merged, log, probe.events, merged.reported), probe)
