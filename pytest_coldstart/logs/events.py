"""Probe events (``logs.vllm_plugin``) merged into a timeline: phase edges, sub-phases, agreement.

The probe appends one JSON line per wrapped vLLM step; here they become

* phase edges: where a step's start or end *is* a phase boundary, it replaces
  the log line that stood for it (``source: "plugin"``): the log line is
  stamped on arrival, the step by the process that ran it. Where vLLM's own
  OpenTelemetry span times the same step (``logs/otel.py``, vLLM 0.16+), the
  span sets the edge instead (``source: "otel"``) and the probe's event for
  that step is set aside; steps with no span keep the probe's events;
* sub-phases of ``config`` and ``engine_init``: every instant of the parent is
  given to the innermost step running then (or ``other``), so the sub-phases
  sum to their parent exactly;
* ``phase_agreement``: where the spans, the probe, the log lines and vLLM's
  self-reports measure the same thing and differ by more than max(0.1 s, 3 %).

Pure: no clock and no I/O except ``read_events``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pytest_coldstart.logs.timeline import PHASE_RULES, PhaseRule, StampedLine, Timeline, timeline_from_stamped
from pytest_coldstart.logs.vllm_plugin import ENV_EVENTS_FILE
from pytest_coldstart.model.phase import SOURCE_OTEL, SOURCE_PLUGIN, Phase

__all__ = ["ENV_EVENTS_FILE", "Disagreement", "MergedTimeline", "ProbeEvent", "ProbeReport", "combine_events",
           "inside_markers", "merge_timeline", "parse_events", "phase_agreement", "plugin_markers", "plugin_rules",
           "read_events", "sub_phases"]

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
    #: Who timed it: ``plugin`` (the probe's wrapper) or ``otel`` (vLLM's own span).
    source: str = SOURCE_PLUGIN

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
    """Two measurements of one thing that differ by more than the threshold.

    ``plugin_s`` is the value timed inside vLLM (the key predates the spans): by the probe, or by vLLM's
    span when ``source`` is ``otel``; ``other`` names what it is compared with.
    """

    name: str
    plugin_s: float
    other_s: float
    other: str  # "log" (phase from log lines), "reported" (vLLM's own figure) or "plugin" (the probe, vs a span)
    source: str = SOURCE_PLUGIN

    @property
    def diff_s(self) -> float:
        return round(self.plugin_s - self.other_s, 6)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "plugin_s": self.plugin_s, "other_s": self.other_s, "other": self.other,
                "diff_s": self.diff_s, "source": str(self.source)}


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
                                     data.get("rank"), data.get("error"),
                                     SOURCE_OTEL if data.get("source") == "otel" else SOURCE_PLUGIN))
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


def combine_events(plugin: Sequence[ProbeEvent], otel: Sequence[ProbeEvent]) -> tuple[ProbeEvent, ...]:
    """The spans, plus the probe's events for every step no span timed (a span wins over the wrapper).

    A process's ``imports`` (the probe: process start to its first plugin load) end no later than the
    first span of that process: EngineCore loads plugins inside ``EngineCore.__init__`` (vLLM 0.32), after
    the ``EngineCoreProc init`` span began its handshakes, which are work, not imports.
    """
    spanned = {e.step for e in otel}
    first_span: dict[int, float] = {}
    for e in otel:
        first_span[e.pid] = min(first_span.get(e.pid, e.start_s), e.start_s)
    kept = []
    for e in plugin:
        if e.step in spanned:
            continue
        if e.step == "imports" and e.pid in first_span and e.start_s < first_span[e.pid] < e.end_s:
            e = replace(e, end_s=first_span[e.pid])
        kept.append(e)
    return tuple(sorted((*kept, *otel), key=lambda e: (e.start_s, e.end_s)))


#: phase -> the probe marker that ends it (put ahead of the log markers in that phase's rule).
PLUGIN_ENDS: dict[str, str] = {
    "imports": "plugin_imports_done",
    "config": "plugin_engine_core_init",
    "engine_init": "plugin_load_start",
    "weights_load": "plugin_load_done",
    "warmup": "plugin_kv_caches_done",
}

_Markers = dict[str, list[tuple[float, dict[str, str]]]]


def inside_markers(events: Sequence[ProbeEvent], api_pid: int) -> tuple[_Markers, dict[str, str]]:
    """Phase edges timed inside vLLM, as extra timeline events (same time base as the log lines),
    and the source of each (``plugin`` or ``otel``: whichever timed the step it comes from)."""
    markers: _Markers = {}
    sources: dict[str, str] = {}

    def put(name: str, timed: Sequence[ProbeEvent], times: list[float]) -> None:
        markers[name] = [(t, {}) for t in times]
        sources[name] = SOURCE_OTEL if all(e.source == SOURCE_OTEL for e in timed) else SOURCE_PLUGIN

    imports = _steps(events, "imports", api_pid)
    if imports:  # the API server's imports end where vLLM first loads plugins (arg parsing)
        put("plugin_imports_done", imports[:1], [imports[0].end_s])
    spanned_core = [e for e in _steps(events, "engine_core_init") if e.source == SOURCE_OTEL]
    if spanned_core:
        # vLLM's "EngineCoreProc init" span starts as EngineCore's process begins its work (before the
        # front-end handshake and "Initializing a V1 LLM engine"): config ends there.
        put("plugin_engine_core_init", spanned_core, [min(e.start_s for e in spanned_core)])
    else:
        # The log's edge is "Initializing a V1 LLM engine", logged first thing in EngineCore.__init__, right
        # after it loads plugins: the end of EngineCore's "imports" (vLLM 0.32 core.py). EngineCore.__init__
        # itself is already running when the probe registers, so it is never wrapped in its own process.
        core_imports = [e for e in _steps(events, "imports") if e.process.startswith("EngineCore")]
        core = [*core_imports, *_steps(events, "engine_core_init")]
        if core:
            put("plugin_engine_core_init", core,
                [min([e.end_s for e in core_imports] + [e.start_s for e in core if e not in core_imports])])
    loads = _steps(events, "load_model")
    if loads:  # the slowest rank gates each edge, as with the log markers
        put("plugin_load_start", loads, [e.start_s for e in loads])
        put("plugin_load_done", loads, [e.end_s for e in loads])
    # EngineCore._initialize_kv_caches (profile, KV cache, warmup) logs "init engine ... took" as its last
    # line (vLLM 0.32 core.py): its end is the end of the warmup phase.
    kv = _steps(events, "kv_cache_init")
    if kv:
        put("plugin_kv_caches_done", kv, [e.end_s for e in kv])
    return markers, sources


def plugin_markers(events: Sequence[ProbeEvent], api_pid: int) -> _Markers:
    """Phase edges timed inside vLLM, as extra timeline events (``inside_markers`` without the sources)."""
    return inside_markers(events, api_pid)[0]


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
    sources: dict[str, str] = {}  # label -> who timed it (a span or the probe; "other": the probe's split)
    for a, b in zip(cuts, cuts[1:], strict=False):
        if b <= a:
            continue
        covering = [e for e in inside if e.start_s <= a and e.end_s >= b]
        innermost = min(covering, key=lambda e: (e.duration_s, e.start_s)) if covering else None
        label = innermost.label(api_pid) if innermost else OTHER
        sources.setdefault(label, innermost.source if innermost else SOURCE_PLUGIN)
        slot = totals.setdefault(label, [0.0, a, b])
        slot[0] += b - a
        slot[2] = b
    parts = [Phase(label, round(first, 6), round(last, 6), round(total, 6), sources[label])
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


def _slowest(events: Sequence[ProbeEvent], step: str) -> float | None:
    timed = _steps(events, step)
    return round(max(e.duration_s for e in timed), 6) if timed else None


def phase_agreement(plugin: Timeline, log: Timeline, events: Sequence[ProbeEvent],
                    reported: Mapping[str, object], *, probe_timeline: Timeline | None = None,
                    probe_events: Sequence[ProbeEvent] = ()) -> tuple[Disagreement, ...]:
    """Disagreements over max(0.1 s, 3 %).

    :param plugin: the timeline with edges timed inside vLLM (by the probe or by spans); its phases so edged
        are compared with the same phases from log lines, and its steps (*events*) with vLLM's self-reports.
    :param probe_timeline: with spans, the timeline edged by the probe's events alone: a span-edged phase is
        compared with it too (``other: "plugin"``), and so is every step both timed (*probe_events*).
    """
    found: list[Disagreement] = []
    inside = (SOURCE_PLUGIN, SOURCE_OTEL)
    by_name = {p.name: p for p in log.phases}
    for phase in plugin.phases:
        other = by_name.get(phase.name)
        if phase.source not in inside or other is None or phase.duration_s is None or other.duration_s is None:
            continue
        if _disagrees(phase.duration_s, other.duration_s):
            found.append(Disagreement(phase.name, phase.duration_s, other.duration_s, "log", str(phase.source)))
    if probe_timeline is not None:
        probed = {p.name: p for p in probe_timeline.phases if p.source == SOURCE_PLUGIN}
        for phase in plugin.phases:
            other = probed.get(phase.name)
            if phase.source != SOURCE_OTEL or other is None or phase.duration_s is None or other.duration_s is None:
                continue
            if _disagrees(phase.duration_s, other.duration_s):
                found.append(Disagreement(phase.name, phase.duration_s, other.duration_s, "plugin", SOURCE_OTEL))
        spanned = sorted({e.step for e in events if e.source == SOURCE_OTEL} & {e.step for e in probe_events})
        for step in spanned:
            span_s, probe_s = _slowest(events, step), _slowest(probe_events, step)
            if span_s is not None and probe_s is not None and _disagrees(span_s, probe_s):
                found.append(Disagreement(step, span_s, probe_s, "plugin", SOURCE_OTEL))
    for step, key in STEP_REPORTED.items():
        value = reported.get(key)
        slowest = _slowest(events, step)
        if slowest is None or not isinstance(value, int | float):
            continue
        if _disagrees(slowest, float(value)):
            source = SOURCE_OTEL if any(e.source == SOURCE_OTEL for e in _steps(events, step)) else SOURCE_PLUGIN
            found.append(Disagreement(step, slowest, float(value), "reported", source))
    return tuple(found)


@dataclass(frozen=True)
class MergedTimeline:
    """The timeline with inside edges, the log-only one beside it, and what the probe and the spans added."""

    timeline: Timeline
    log_timeline: Timeline
    sub_phases: dict[str, tuple[Phase, ...]]
    agreement: tuple[Disagreement, ...]
    probe: ProbeReport
    #: vLLM's spans as events (empty: none arrived, or tracing was off).
    otel: ProbeReport = ProbeReport(())
    #: phase -> who timed its end, for the phases whose end came from inside vLLM (``plugin`` or ``otel``).
    edges: dict[str, str] = field(default_factory=dict)
    #: With spans and probe events both: the timeline edged by the probe alone (what the spans replaced).
    probe_timeline: Timeline | None = None


def _edged(lines: Sequence[StampedLine], ready_s: float | None, events: Sequence[ProbeEvent],
           api_pid: int) -> Timeline:
    markers, sources = inside_markers(events, api_pid)
    return timeline_from_stamped(lines, ready_s=ready_s, rules=plugin_rules(), extra_events=markers,
                                 plugin_events=frozenset(markers), edge_sources=sources)


def merge_timeline(lines: Sequence[StampedLine], *, ready_s: float | None, probe: ProbeReport,
                   api_pid: int, otel: ProbeReport | None = None) -> MergedTimeline:
    """Phases from log lines with the edges and sub-phases timed inside vLLM (none: the log timeline as is).

    :param otel: vLLM's spans as events (``logs.otel.span_record`` lines read by ``parse_events``).
    """
    otel = otel or ProbeReport(())
    log = timeline_from_stamped(lines, ready_s=ready_s)
    if not probe.events and not otel.events:
        return MergedTimeline(log, log, dict(log.sub_phases), (), probe, otel)
    events = combine_events(probe.events, otel.events)
    merged = _edged(lines, ready_s, events, api_pid)
    both = bool(probe.events and otel.events)
    probe_only = _edged(lines, ready_s, probe.events, api_pid) if both else None
    subs = {p.name: sub_phases(p, events, api_pid) for p in merged.phases if p.name in SPLIT_PHASES and p.observed}
    edges = {p.name: str(p.source) for p in merged.phases if p.source in (SOURCE_PLUGIN, SOURCE_OTEL)}
    agreement = phase_agreement(merged, log, events, merged.reported, probe_timeline=probe_only,
                                probe_events=probe.events if both else ())
    # The log's own split of weights_load (model construction / weight transfer, "Loading weights took") on
    # the merged edges: the span "Loading (GPU|CPU)" covers construction and transfer both (vLLM 0.32).
    subs = {**merged.sub_phases, **{k: v for k, v in subs.items() if v}}
    return MergedTimeline(merged, log, subs, agreement, probe, otel, edges, probe_only)
