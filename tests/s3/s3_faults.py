"""A tiny fault-injecting HTTP proxy in front of a real moto_server.

A real S3 endpoint cannot be made to throttle, fail with 5xx or hang mid-upload
on demand; this proxy forwards every request to moto untouched except those a
rule picks, which get a canned S3 error (503 SlowDown, 500 InternalError) or
are held open (to interrupt an upload for real by killing the client).
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{code} injected by the '
              'test proxy</Message><RequestId>coldstart-test</RequestId></Error>')


@dataclass
class FaultPlan:
    """Which requests fail: the first ``fail_first`` ones, or methods + paths matching."""

    fail_first: int = 0
    status: int = 503
    code: str = "SlowDown"
    hold_path_part: str = ""  # PUTs whose path contains this never get an answer
    seen: list[str] = field(default_factory=list)
    failed: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    def __init__(self, upstream_port: int, plan: FaultPlan) -> None:
        self.plan = plan
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.plan.lock:
                    proxy.plan.seen.append(f"{self.command} {self.path}")
                    inject = proxy.plan.failed < proxy.plan.fail_first
                    if inject:
                        proxy.plan.failed += 1
                if self.command == "PUT" and proxy.plan.hold_path_part and proxy.plan.hold_path_part in self.path:
                    proxy.plan.held.set()
                    threading.Event().wait(600)  # the client is killed while we hold it
                    return
                if inject:
                    payload = _ERROR_XML.format(code=proxy.plan.code).encode()
                    self.send_response(proxy.plan.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
