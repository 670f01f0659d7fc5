"""The replay server: a recorded start re-emitted at its recorded pace (``--coldstart-launcher replay``).

Run as ``python -m pytest_coldstart.launch.replay_server --log FILE --speed F --port P``.
It prints the log's lines to stdout at their recorded times divided by the
speed factor (``logs.replay.plan_replay``), binds its HTTP port only at the
moment the log says the server is up (before that a connection is refused, as
with vLLM before uvicorn starts; a log that never served ends in exit code 1
after its last line, as the recorded server did), then serves

* ``GET /health`` -> 200,
* ``GET /v1/models`` -> the served name,
* ``POST /v1/completions`` -> a fixed completion (streamed as SSE when asked),

until SIGTERM/SIGINT. The completion is deterministic and says it is a replay:
a replay times the harness's path (arrival stamps, phases, budgets, TTFT,
results, the gate) on a real GPU timeline, never a model. Standard library and
this package only; it never imports vLLM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pytest_coldstart.logs.replay import ReplayLogError, plan_replay

#: A recorded start that never served: the replay exits with this code after its last line.
NEVER_UP_EXIT = 1
NEVER_UP_PREFIX = "[coldstart-replay]"
#: The completion every request gets: 4 chunks, the same each time (the readiness oracle can check it).
COMPLETION_CHUNKS: tuple[str, ...] = (" replayed", " start", " of", " record")


def _handler(served_name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the recorded log is the server's log; requests to the replay are not part of it

        def _json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": served_name, "object": "model",
                                                             "owned_by": "coldstart-replay"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._json(400, {"error": {"message": "body is not JSON"}})
                return
            if self.path != "/v1/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if body.get("model") != served_name:
                self._json(404, {"error": {"message": f"model {body.get('model')!r} not served; "
                                                      f"this replay serves {served_name!r}"}})
                return
            created = int(time.time())
            if not body.get("stream"):
                self._json(200, {"id": "cmpl-replay", "object": "text_completion", "created": created,
                                 "model": served_name, "choices": [{"index": 0, "text": "".join(COMPLETION_CHUNKS),
                                                                    "finish_reason": "length"}]})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i, text in enumerate(COMPLETION_CHUNKS):
                last = i == len(COMPLETION_CHUNKS) - 1
                chunk = {"id": "cmpl-replay", "object": "text_completion", "created": created, "model": served_name,
                         "choices": [{"index": 0, "text": text, "finish_reason": "length" if last else None}]}
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def serve(log: Path, *, speed: float, host: str, port: int, served_name: str, kind: str | None = None) -> int:
    plan = plan_replay(log.read_text(encoding="utf-8", errors="replace"), kind)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    origin = time.monotonic()
    out = sys.stdout
    server: ThreadingHTTPServer | None = None
    try:
        for line, at_s in zip(plan.lines, plan.schedule_s, strict=True):
            if stop.wait(max(0.0, origin + at_s / speed - time.monotonic())):
                return 0
            out.write(line.text + "\n")
            out.flush()
        if plan.up_s is None:
            print(f"{NEVER_UP_PREFIX} the recorded server never served; exiting as it did", file=sys.stderr,
                  flush=True)
            return NEVER_UP_EXIT
        if stop.wait(max(0.0, origin + plan.up_s / speed - time.monotonic())):
            return 0
        server = ThreadingHTTPServer((host, port), _handler(served_name))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        stop.wait()
        return 0
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_coldstart.launch.replay_server",
                                     description="Re-emit a recorded server log at its pace, then serve /health.")
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-name", required=True)
    parser.add_argument("--kind", choices=("vllm", "ray"), default=None)
    args = parser.parse_args(argv)
    try:
        return serve(args.log, speed=args.speed, host=args.host, port=args.port, served_name=args.served_name,
                     kind=args.kind)
    except (OSError, ReplayLogError) as exc:
        print(f"replay server: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
