"""Headless Chromium for the browser tests: the asv site, the HTML report and the docs site.

``make test`` installs Debian's ``chromium`` where it can (root, apt-get); elsewhere the browser tests skip
with the reason, and ``COLDSTART_REQUIRE_CHROMIUM=1`` turns that skip into a failure (CI on a known image).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("COLDSTART_REQUIRE_CHROMIUM"),
    reason="no headless browser: chromium is not installed and could not be (make test installs Debian's "
           "chromium when run as root with apt-get)")


def stop_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """TERM, grace, KILL for *proc*'s whole process group (Chromium's renderers and zygote share it)."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def chromium(root: Path, *args: str, size: str = "1400,900") -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with its own profile under *root*; its process group is stopped afterwards.

    The flags are the ones a closed network needs: without the background-networking ones Chromium keeps
    trying hosts it cannot reach.
    """
    assert CHROMIUM is not None, "chromium is not installed"
    profile = root / f"chrome-{time.monotonic_ns()}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
           f"--user-data-dir={profile}", f"--window-size={size}", "--virtual-time-budget=15000", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        stop_group(proc)
    shutil.rmtree(profile, ignore_errors=True)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@dataclass(frozen=True)
class Page:
    """What the browser made of one page: its DOM after scripts ran, and a screenshot."""

    dom: str
    screenshot: Path


def render(root: Path, url: str, name: str, *, size: str = "1400,900") -> Page:
    shot = root / f"{name}.png"
    result = chromium(root, f"--screenshot={shot}", url, size=size)
    assert shot.is_file(), result.stderr[-2000:]
    return Page(chromium(root, "--dump-dom", url, size=size).stdout, shot)


def ink_share(png: Path) -> float:
    """Share of the screenshot's pixels that are not (near) white: 0 for a blank page."""
    from PIL import Image

    image = Image.open(png).convert("L")
    histogram = image.histogram()
    return 1 - sum(histogram[245:]) / (image.width * image.height)


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """*directory* over HTTP on a free loopback port (a thread in this process), as ``http://127.0.0.1:PORT/``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
