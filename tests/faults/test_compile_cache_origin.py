"""A compile cache fetched from S3 is code that will run: its digest is written at push time and verified
at fetch, a cache without one is not used, and the result records where it came from (real moto_server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="the s3 extra is not installed: pip install -e .[s3]")

from pytest_coldstart.optimize import compile_cache as cc
from pytest_coldstart.optimize import s3
from tests.s3.conftest import bucket, moto_endpoint, s3_env  # noqa: F401 - fixtures
from tests.s3.test_s3_compile_cache import _fake_cache_root, _key


def test_a_fetched_cache_records_its_verified_origin(bucket: str, tmp_path: Path) -> None:  # noqa: F811
    client = s3.make_client()
    base = s3.S3Uri(bucket, "cc")
    meta = cc.push(client, _fake_cache_root(tmp_path / "root"), _key(), base)
    assert len(meta["archive_sha256"]) == 64 and meta["pushed_by"]  # moto's STS answers with an ARN
    result = cc.fetch(client, _key(), base, tmp_path / "dest")
    record = result.to_record()
    assert record["origin"] == {"archive_sha256": meta["archive_sha256"], "sha256_verified": True,
                                "created_at": meta["created_at"], "pushed_by": meta["pushed_by"]}


def test_a_cache_without_a_digest_is_not_used(bucket: str, tmp_path: Path) -> None:  # noqa: F811
    client = s3.make_client()
    base = s3.S3Uri(bucket, "cc")
    key = _key()
    where = key.location(base)
    meta = cc.push(client, _fake_cache_root(tmp_path / "root"), key, base)
    del meta["archive_sha256"]
    client.put_object(Bucket=bucket, Key=where.key(cc.META), Body=json.dumps(meta).encode())
    result = cc.fetch(client, key, base, tmp_path / "dest")
    assert not result.hit and "no archive sha256" in result.reason
    assert not (tmp_path / "dest").exists()
