"""vLLM's own OpenTelemetry startup spans (0.16+) as probe events: decode, name, place on the harness's clock.

vLLM 0.16+ decorates its startup steps with ``@instrument(span_name=...)``
(``vllm/tracing/__init__.py``, ``vllm/tracing/otel.py`` in 0.32). The decorator
is a no-op unless OpenTelemetry is importable in the server's Python (0.32's
``otel.py`` imports the SDK *and both* OTLP exporters, gRPC and HTTP, or
tracing is off) and a tracer provider exists. vLLM sets one up when started
with ``--otlp-traces-endpoint URL``: ``AsyncLLM.__init__`` calls
``init_tracer`` (it also writes ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` into
the environment), EngineCore (``run_engine_core``) and each worker
(``WorkerProc.worker_main``) call ``maybe_init_worker_tracer`` with that
endpoint and resource attributes ``vllm.process_kind`` / ``vllm.process_name``;
every provider has ``vllm.process_id``. The exporter protocol is
``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` (``grpc`` by default; the harness asks
for ``http/protobuf``), batched by the SDK's ``BatchSpanProcessor``
(``OTEL_BSP_SCHEDULE_DELAY``, ms).

Here: the bytes of one ``POST /v1/traces`` become ``OtelSpan`` values, and a
span becomes one probe event line (the shape ``logs/vllm_plugin.py`` writes,
with ``"source": "otel"``), named by the probe's step where both time the same
function. Pure: no clock and no I/O (the receiver is ``measure/otlp.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_coldstart.logs.vllm_plugin import EVENT_VERSION, TARGETS

__all__ = ["CODE_STEPS", "SPAN_STEPS", "OtelSpan", "decode_traces", "span_record", "step_of"]

#: span name -> the probe's step for the same function (``vllm_plugin.TARGETS``); names from vLLM 0.32.
SPAN_STEPS: dict[str, str] = {
    "AsyncMPClient init": "engine_client",  # AsyncMPClient.__init__ (the probe wraps MPClient.__init__)
    "SyncMPClient init": "engine_client",
    "EngineCoreProc init": "engine_core_init",  # EngineCoreProc.__init__: handshakes, then EngineCore.__init__
    "Executor init": "executor_init",  # Executor.__init__
    "Worker init": "worker_init",  # WorkerWrapperBase.init_worker (and WorkerProc.__init__, see CODE_STEPS)
    "Init device": "device_init",  # gpu_worker.Worker.init_device (CPUWorker overrides it untraced)
    "Loading (GPU)": "load_model",  # GPUModelRunner.load_model, inside Worker.load_model
    "Loading (CPU)": "load_model",  # CPUModelRunner.load_model
    "Load model": "loader_load_model",  # BaseModelLoader.load_model, inside the above (not the probe's step)
    "Prepare model": "kv_cache_init",  # EngineCore._initialize_kv_caches: profile, KV cache, warmup
    "Allocate KV cache": "kv_cache_alloc",  # Worker.initialize_from_config
    "Warmup (GPU)": "compile_warmup",  # Worker.compile_or_warm_up_model
    "Capture model": "graph_capture",  # GPUModelRunner.capture_model
}
#: ``code.function`` (set by ``instrument_otel``) -> step, where one span name covers two functions.
CODE_STEPS: dict[str, str] = {"WorkerProc.__init__": "worker_proc_init"}

_RANK_RE = re.compile(r"_(\d+)$")
_PROBE_STEPS = frozenset({step for _, _, step in TARGETS} | {"imports"})


@dataclass(frozen=True)
class OtelSpan:
    """One finished span as exported: unix-ns times (the server's wall clock) and where it came from."""

    name: str
    start_ns: int
    end_ns: int
    pid: int | None = None
    process_kind: str | None = None  # "engine_core", "worker"; None in the API server
    process_name: str | None = None  # "EngineCore", "Worker_0"
    code_function: str | None = None
    span_id: str = ""
    parent_id: str = ""
    error: str | None = None
    #: When the request that carried it reached the harness (its monotonic clock, seconds).
    arrived_s: float | None = None

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind in ("string_value", "int_value", "bool_value", "double_value") else None


def _attrs(key_values: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode_traces(body: bytes, arrived_s: float | None = None) -> tuple[OtelSpan, ...]:
    """The spans of one OTLP/HTTP protobuf export (``ExportTraceServiceRequest``); ValueError if it is not one."""
    try:  # imported here: only the harness that receives spans needs opentelemetry-proto
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError as exc:
        raise ValueError(f"opentelemetry-proto is not installed in the harness's Python: {exc}") from None
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise ValueError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    spans: list[OtelSpan] = []
    for resource_spans in request.resource_spans:
        res = _attrs(resource_spans.resource.attributes)
        pid = res.get("vllm.process_id", res.get("process.pid"))
        try:
            pid = int(pid) if pid is not None else None
        except (TypeError, ValueError):
            pid = None
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attrs = _attrs(span.attributes)
                error = None
                if span.status.code == 2:  # STATUS_CODE_ERROR: the step raised (record_exception)
                    error = span.status.message or "error"
                spans.append(OtelSpan(span.name, int(span.start_time_unix_nano), int(span.end_time_unix_nano), pid,
                                      res.get("vllm.process_kind"), res.get("vllm.process_name"),
                                      attrs.get("code.function"), span.span_id.hex(), span.parent_span_id.hex(),
                                      error, arrived_s))
    return tuple(spans)


def step_of(span: OtelSpan) -> str:
    """The probe's step name for *span*; a span with no probe twin gets its name as a slug (``load_weights``)."""
    if span.code_function in CODE_STEPS:
        return CODE_STEPS[span.code_function]
    if span.name in SPAN_STEPS:
        return SPAN_STEPS[span.name]
    slug = re.sub(r"[^a-z0-9]+", "_", span.name.lower()).strip("_") or "span"
    # Never the name of a probe step this span does not time: it would replace that step's events.
    return f"span_{slug}" if slug in _PROBE_STEPS else slug


def span_record(span: OtelSpan, mono_minus_wall_s: float) -> dict[str, Any]:
    """*span* as one probe event line (``logs.events.parse_events`` reads it), times on the harness's clock.

    :param mono_minus_wall_s: the harness's monotonic clock minus the wall clock, read together at spawn.
        Spans carry wall-clock times (``time.time_ns`` in the server's processes, the same host clock), so a
        wall-clock step or NTP slew during the start shifts them by that much (a slew of at most 500 ppm
        moves a span 120 s into the start by <= 60 ms); the two reads of the anchor are microseconds apart.
    """
    wall_start, wall_end = span.start_ns / 1e9, span.end_ns / 1e9
    process = span.process_name or ("main" if span.process_kind is None else span.process_kind)
    match = _RANK_RE.search(span.process_name or "") if span.process_kind == "worker" else None
    return {"v": EVENT_VERSION, "kind": "step", "source": "otel", "process": process,
            "pid": span.pid if span.pid is not None else -1,
            "rank": int(match.group(1)) if match else None, "step": step_of(span),
            "mono_start": round(wall_start + mono_minus_wall_s, 6), "mono_end": round(wall_end + mono_minus_wall_s, 6),
            "wall_start": wall_start, "wall_end": wall_end, "error": span.error, "span": span.name,
            "arrived_mono": span.arrived_s}
