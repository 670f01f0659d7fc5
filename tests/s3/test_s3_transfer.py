"""S3 transfers against a real moto_server: skip-unchanged uploads, manifests,
and the faults a user meets (endpoint down, missing key, throttling, interrupted
upload), each with a clear error and nothing half-written ever used."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="the s3 extra is not installed: pip install -e .[s3]")
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.registry import ModelSpec
from pytest_coldstart.optimize import s3, s3source, tinymodel
from tests.s3.s3_faults import FaultPlan, FaultProxy


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tinymodel.make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def test_parse_uri_and_bad_uris() -> None:
    assert s3.parse_uri("s3://b/a/b/") == s3.S3Uri("b", "a/b")
    assert str(s3.parse_uri("s3://b")) == "s3://b"
    for bad in ("b/p", "s3:///p", "gs://b/p"):
        with pytest.raises(ConfigError, match="s3://BUCKET/PREFIX"):
            s3.parse_uri(bad)


def test_load_format_picks_the_source_kind() -> None:
    assert s3source.source_kind(["--load-format", "runai_streamer_sharded"]) == "sharded"
    assert s3source.source_kind(["--load-format=runai_streamer"]) == "model"
    assert s3source.load_format(["--enforce-eager"]) is None


def test_upload_skips_unchanged_files_and_deletes_stale_ones(bucket: str, tiny: Path, tmp_path: Path) -> None:
    client = s3.make_client()
    uri = s3.S3Uri(bucket, "tiny")
    first = s3source.upload_model(client, tiny, uri)
    assert sorted(first.uploaded) == sorted(p.name for p in tiny.iterdir())
    assert first.bytes_uploaded == sum(p.stat().st_size for p in tiny.iterdir())
    again = s3source.upload_model(client, tiny, uri)
    assert again.uploaded == () and len(again.skipped) == len(first.uploaded)
    changed = tmp_path / "tiny"
    subprocess.run(["cp", "-r", str(tiny), str(changed)], check=True)
    (changed / "generation_config.json").write_text('{"changed": true}')
    (changed / "tokenizer_config.json").unlink()
    third = s3source.upload_model(client, changed, uri)
    assert third.uploaded == ("generation_config.json",)
    assert third.deleted == ("tokenizer_config.json",)
    manifest = s3.require_complete(client, uri, kind="model", next_step="")
    assert set(manifest["files"]) == {p.name for p in changed.iterdir()}


def test_missing_prefix_and_missing_key_are_clear(bucket: str, tmp_path: Path) -> None:
    client = s3.make_client()
    with pytest.raises(s3.S3Error, match=r"holds no complete model upload .*coldstart s3 upload-model"):
        s3.require_complete(client, s3.S3Uri(bucket, "nothing"), kind="model",
                            next_step="Run `coldstart s3 upload-model MODEL_DIR s3://...`")
    with pytest.raises(s3.S3Error, match="no such object"):
        s3.download_file(client, s3.S3Uri(bucket, "nothing"), "model.safetensors", tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())
    with pytest.raises(s3.S3Error, match="bucket does not exist"):
        s3.upload_tree(client, tmp_path.parent, s3.S3Uri("no-such-bucket-here", "p"), kind="model")


def test_real_model_missing_on_s3_names_the_command(bucket: str) -> None:
    model = ModelSpec("llama-x", "hf:org/llama-x", "llama-x", tensor_parallel_size=2)
    with pytest.raises(s3.S3Error, match=r"coldstart s3 shard llama-x s3://"):
        s3source.ensure_source(model, ("--load-format", "runai_streamer_sharded"), f"s3://{bucket}/llama-x-tp2",
                               generated_dir=None, workdir=Path("."), env={})


def test_endpoint_down_is_a_clear_error(s3_env, monkeypatch: pytest.MonkeyPatch, tiny: Path) -> None:
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with pytest.raises(s3.S3Error) as exc:
        s3source.upload_model(s3.make_client(connect_timeout_s=1), tiny, s3.S3Uri("b", "p"))
    assert f"cannot reach the S3 endpoint http://127.0.0.1:{dead}" in str(exc.value)
    assert "after 2 attempts" in str(exc.value) and "AWS_ENDPOINT_URL" in str(exc.value)


def test_no_credentials_says_where_they_come_from(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    assert not s3.has_credentials()
    with pytest.raises(s3.S3Error, match="no AWS credentials found.*AWS_ACCESS_KEY_ID"):
        s3.make_client()
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(s3.S3Error, match="resolving AWS credentials failed: ProfileNotFound"):
        s3.make_client()


def test_throttling_is_retried_then_reported(bucket: str, s3_env, monkeypatch: pytest.MonkeyPatch,
                                             tiny: Path) -> None:
    upstream = int(s3_env.url.rsplit(":", 1)[1])
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    with FaultProxy(upstream, FaultPlan(fail_first=2, status=503, code="SlowDown")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        report = s3source.upload_model(s3.make_client(), tiny, s3.S3Uri(bucket, "throttled"))
        assert proxy.plan.failed == 2 and report.uploaded  # standard retry mode rode it out
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with FaultProxy(upstream, FaultPlan(fail_first=100, status=500, code="InternalError")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(s3.S3Error, match=r"kept answering InternalError \(HTTP 500\) through 2 attempts"):
            s3source.upload_model(s3.make_client(), tiny, s3.S3Uri(bucket, "broken"))
        assert proxy.plan.failed == 2


def test_interrupted_upload_is_never_used(bucket: str, s3_env, tiny: Path, tmp_path: Path) -> None:
    """Kill `coldstart s3 upload-model` mid-upload (the proxy holds the weights PUT)."""
    client = s3.make_client()
    uri = s3.S3Uri(bucket, "interrupted")
    s3source.upload_model(client, tiny, uri)  # a complete older upload is there first
    upstream = int(s3_env.url.rsplit(":", 1)[1])
    with FaultProxy(upstream, FaultPlan(hold_path_part="model.safetensors")) as proxy:
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
        (tmp_path / "config.json").write_text((tiny / "config.json").read_text().replace("2048", "4096"))
        (tmp_path / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
        proc = subprocess.Popen([sys.executable, "-m", "pytest_coldstart.cli", "s3", "upload-model", str(tmp_path),
                                 str(uri)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            assert proxy.plan.held.wait(60), "the upload never reached the weights"
        finally:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    with pytest.raises(s3.S3Error, match="holds no complete model upload.*interrupted"):
        s3.require_complete(client, uri, kind="model", next_step="")
    model = ModelSpec("tiny-x", "hf:x/y", "tiny-x")
    with pytest.raises(s3.S3Error, match="coldstart s3 upload-model"):
        s3source.ensure_source(model, ("--load-format", "runai_streamer"), str(uri), generated_dir=None,
                               workdir=tmp_path, env={})


def test_cli_errors_are_clear_and_print_no_secret(s3_env, tmp_path: Path) -> None:
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "s3", "upload-model", str(tmp_path),
                          "s3://b/p"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "is not a model directory" in out.stderr
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "cache", "pull", "--model", "tiny-llama",
                          "--workdir", str(tmp_path), "s3://b/cache"], env=env, capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 2 and "cannot reach the S3 endpoint http://127.0.0.1:9" in out.stderr
    assert time.monotonic() - started < 60
    for text in (out.stdout, out.stderr):
        assert s3_env.secret_key not in text and s3_env.access_key not in text


def test_benchmark_without_s3_settings_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A user who configured an S3 location but no endpoint/credentials gets told what to set.

    (With no location at all, the tiny model uses the embedded endpoint and real models are skipped:
    tests/plugin/test_adoptable.py.)
    """
    from tests.conftest import run_bench

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("COLDSTART_S3_URI", "s3://coldstart-models")
    bench = run_bench(tmp_path / "results", "--model", "tiny-llama", "--optimization", "runai_streamer",
                      f"--coldstart-workdir={tmp_path / 'work'}", timeout_s=300)
    assert bench.returncode == 1, bench.output[-3000:]
    assert "no AWS credentials found" in bench.output and "AWS_ENDPOINT_URL" in bench.output
    assert "docs: How-to > S3 optimizations" in bench.output
    # Once in the failure itself; the short summary repeats it when the terminal is wide enough (CI's COLUMNS).
    failures = bench.output.split("short test summary info")[0]
    assert "During handling of the above exception" not in bench.output
    assert failures.count("no AWS credentials found") == 1, failures[-3000:]
