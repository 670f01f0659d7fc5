"""A real S3 endpoint for the S3 tests: moto's standalone server on 127.0.0.1.

Started once per session in its own process group and stopped with TERM,
a grace period, then KILL. Credentials are random per session, so a test can
prove they never reach a log or a result.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_coldstart.launch.process import stop_group


def _moto_server() -> str | None:
    local = Path(sys.executable).parent / "moto_server"
    return str(local) if local.exists() else shutil.which("moto_server")


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
                # Never look for instance credentials or a user's files in tests.
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_CONFIG_FILE": os.devnull,
                # The S3 location `s3:NAME` sources bind to (else the plugin starts an embedded endpoint).
                "COLDSTART_S3_URI": "s3://coldstart-models"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    stop_group(proc, ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)))


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    binary = _moto_server()
    if binary is None:
        pytest.skip("moto_server not installed; `pip install -e .[s3]` installs moto[server]")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield S3Endpoint(f"http://127.0.0.1:{port}", "AKIA" + secrets.token_hex(8).upper(),
                         "cs" + secrets.token_urlsafe(30))
    finally:
        _stop(proc)


@pytest.fixture
def s3_env(moto_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """The endpoint's credentials in os.environ for this test only (fast retries)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS",
                 "COLDSTART_COMPILE_CACHE", "COLDSTART_S3_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_endpoint.env().items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


@pytest.fixture
def bucket(s3_env: S3Endpoint) -> str:
    """A fresh bucket per test."""
    from pytest_coldstart.optimize import s3

    name = "t-" + secrets.token_hex(6)
    s3.ensure_bucket(s3.make_client(), name)
    return name
