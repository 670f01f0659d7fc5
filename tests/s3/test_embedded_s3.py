"""The CPU lane's embedded S3 endpoint: moto_server on loopback, started, used, stopped, environment restored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_coldstart.optimize import s3
from pytest_coldstart.optimize.s3source import EMBEDDED_LOCATION, EmbeddedS3, moto_server_binary

pytestmark = pytest.mark.skipif(moto_server_binary() is None, reason="moto_server not installed (cpu/dev extra)")


def test_embedded_endpoint_serves_then_stops_and_restores_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "someone-elses")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    before = dict(os.environ)
    embedded = EmbeddedS3(tmp_path / "moto.log")
    try:
        assert embedded.start() == EMBEDDED_LOCATION
        assert embedded.start() == EMBEDDED_LOCATION  # idempotent: one server
        pid = embedded.pid
        assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:") and "AWS_PROFILE" not in os.environ
        client = s3.make_client()
        bucket = s3.parse_uri(EMBEDDED_LOCATION).bucket
        client.put_object(Bucket=bucket, Key="probe", Body=b"x")
        assert client.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"x"
    finally:
        embedded.stop()
    assert dict(os.environ) == before
    assert not embedded.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    embedded.stop()  # twice is fine
