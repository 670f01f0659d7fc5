"""A small fake OpenAI server, only for faults a real vLLM cannot show on demand.

Modes (``--mode``):

* ``trickle``: /health 200; /v1/completions sends headers, then a keep-alive
  comment every 0.2 s forever (each read succeeds, the response never ends);
* ``unhealthy``: /health answers 503 forever;
* ``setsid``: healthy and serving, and at start spawns a child that calls
  ``setsid()`` and double-forks a grandchild (its parent exits), both sleeping;
  their pids go to ``--pid-file``;
* ``ignore-term``: as ``setsid``, and the server ignores SIGTERM;
* ``chatty`` / ``chatty-hang``: printing an 8 KiB line every 10 ms (to fill a small disk); the
  latter never healthy;
* ``hang`` / ``hang-ignore-term``: never healthy (503), with the escapees of
  ``setsid``; the latter also ignores SIGTERM (only KILL stops it).
* ``leaky``: prints every line of ``$FAKE_LEAK_FILE`` (secrets, as a careless library would) and
  exits 1;
* ``download``: as ``ok``, after "downloading" its weights into ``$HF_HUB_CACHE`` unless they are
  already there (what vLLM does with an ``hf:`` model);
* ``daemonize``: healthy and serving, and at start double-forks a ``setsid()`` daemon that
  re-execs itself with an *empty* environment (no owner marker, own session, its parent gone:
  only the harness, a subreaper, sees it); its pid goes to ``--pid-file``;
* ``flood``: never healthy (503), printing 8 KiB lines as fast as the pipe takes them;
* ``secrets``: as ``ok``, after logging its argv and a URL with a password (``$FAKE_URL``), as a
  careless server would (then exits ``$FAKE_EXIT`` when set);
* ``ok``: healthy, answers one short completion.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def spawn_escapees(pid_file: Path) -> None:
    """A setsid() child, and a grandchild re-parented away from us (its parent exits at once)."""
    child = os.fork()
    if child == 0:
        os.setsid()
        grand = os.fork()
        if grand == 0:
            os.setsid()
            time.sleep(3600)
            os._exit(0)
        with pid_file.open("a") as f:
            f.write(f"{os.getpid()}\n{grand}\n")
        # The middle process exits: the grandchild is orphaned (re-parented to a subreaper, or init).
        inner = os.fork()
        if inner == 0:
            time.sleep(3600)
            os._exit(0)
        with pid_file.open("a") as f:
            f.write(f"{inner}\n")
        os._exit(0)


def daemonize(pid_file: Path) -> None:
    """Double fork + setsid(), then exec a fresh interpreter with an empty environment (``env -i``)."""
    child = os.fork()
    if child != 0:
        os.waitpid(child, 0)  # the middle process exits at once: the daemon is orphaned
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    with pid_file.open("a") as f:
        f.write(f"{os.getpid()}\n")
    os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(3600)"], {})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--pid-file", default=None)
    args, _extra = parser.parse_known_args()
    mode = args.mode
    if args.pid_file:
        with Path(args.pid_file).open("a") as f:
            f.write(f"{os.getpid()}\n")
    if mode in ("setsid", "ignore-term", "hang", "hang-ignore-term") and args.pid_file:
        spawn_escapees(Path(args.pid_file))
    if mode == "daemonize" and args.pid_file:
        daemonize(Path(args.pid_file))
    if mode == "secrets":
        print(f"INFO started as {' '.join(sys.argv)}", flush=True)
        print(f"INFO connecting to {os.environ.get('FAKE_URL', '')}", flush=True)
        if os.environ.get("FAKE_EXIT"):
            sys.exit(int(os.environ["FAKE_EXIT"]))
    if mode == "download":
        blob = Path(os.environ["HF_HUB_CACHE"]) / "models--org--fake" / "blobs" / "weights"
        if blob.exists():
            print("INFO weights found in the HF hub cache; no download", flush=True)
        else:
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(os.urandom(256 * 1024))
            print("INFO Downloading weights: done", flush=True)
    if mode == "leaky":
        for line in Path(os.environ["FAKE_LEAK_FILE"]).read_text().splitlines():
            print(f"DEBUG {line}", flush=True)
        sys.exit(1)
    if mode in ("ignore-term", "hang-ignore-term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            code = 503 if mode in ("unhealthy", "hang", "hang-ignore-term", "chatty-hang", "flood") else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            if mode == "trickle":
                while True:
                    chunk(b": keep-alive\n\n")
                    time.sleep(0.2)
            event = {"choices": [{"text": "hello", "index": 0}]}
            chunk(f"data: {json.dumps(event)}\n\n".encode())
            chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("INFO Started server process", flush=True)
    if mode in ("chatty", "chatty-hang"):
        def chatter() -> None:
            while True:
                print("x" * 8192, flush=True)
                time.sleep(0.01)
        threading.Thread(target=chatter, daemon=True).start()
    print(f"INFO Uvicorn running on http://127.0.0.1:{args.port}", flush=True)
    if mode == "flood":
        threading.Thread(target=server.serve_forever, daemon=True).start()
        line = b"INFO flood " + b"x" * 8180 + b"\n"  # 8 KiB a line, no pause: the pipe sets the pace
        out = sys.stdout.buffer
        while True:
            out.write(line)
            out.flush()
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
