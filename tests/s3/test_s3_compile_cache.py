"""The compile cache on a real moto_server: keyed by model + vLLM + torch, pushed
and fetched whole, stale or corrupt entries never used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="the s3 extra is not installed: pip install -e .[s3]")

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.optimize import compile_cache as cc
from pytest_coldstart.optimize import s3


def _key(vllm: str = "0.32.0", torch: str = "2.13.0+cpu", args: tuple[str, ...] = ()) -> cc.CacheKey:
    return cc.make_key("tiny-llama", model_ref="/m/tiny", engine_args=args, tensor_parallel_size=1,
                       max_model_len=512, assets_dir="/w/assets", vllm=vllm, torch=torch)


def _fake_cache_root(root: Path) -> Path:
    """A VLLM_CACHE_ROOT laid out as vLLM 0.32 leaves it (contents are opaque to us)."""
    aot = root / "torch_compile_cache" / "torch_aot_compile" / "abc" / "rank_0_0"
    aot.mkdir(parents=True)
    (aot / "model").write_bytes(b"\x00aot-artifact" * 1000)
    (root / "torch_compile_cache" / "inductor_cache").mkdir()
    (root / "torch_compile_cache" / "inductor_cache" / "fx.bin").write_bytes(b"graph" * 500)
    (root / ".complete").write_text("{}")
    return root


def test_key_carries_versions_model_and_args() -> None:
    base = s3.S3Uri("cache", "cc")
    key = _key()
    assert key.location(base).prefix.startswith("cc/tiny-llama/vllm-0.32.0_torch-2.13.0+cpu/")
    assert _key(vllm="0.31.0").digest != key.digest
    assert _key(torch="2.12.0").digest != key.digest
    assert _key(args=("--enforce-eager",)).digest != key.digest
    other = cc.make_key("tiny-llama", model_ref="/m/tiny", engine_args=(), tensor_parallel_size=1, max_model_len=512,
                        assets_dir="/w/assets", vllm="0.32.0", torch="2.13.0+cpu", launcher="ray-serve")
    assert other.digest != key.digest
    assert _key() == key
    assert _key(vllm="").digest != key.digest  # a local cache can be keyed without them ...
    with pytest.raises(ConfigError, match="vLLM and torch versions"):
        cc.require_versions(_key(vllm=""))  # ... an S3 one, whose series names them, cannot


def test_store_choice_is_explicit(monkeypatch: pytest.MonkeyPatch, s3_env) -> None:
    assert cc.choose_store("s3://b/p")[0] == "s3"
    assert cc.choose_store("") == ("local", "the model has no compile_cache_uri in models.toml")
    monkeypatch.setenv(cc.STORE_ENV, "local")
    assert cc.choose_store("s3://b/p") == ("local", "COLDSTART_COMPILE_CACHE=local")
    monkeypatch.setenv(cc.STORE_ENV, "s3")
    with pytest.raises(ConfigError, match="no compile_cache_uri"):
        cc.choose_store("")
    monkeypatch.setenv(cc.STORE_ENV, "sometimes")
    with pytest.raises(ConfigError, match="expected auto, s3 or local"):
        cc.choose_store("s3://b/p")


def test_push_then_fetch_round_trips(bucket: str, tmp_path: Path) -> None:
    client = s3.make_client()
    base = s3.S3Uri(bucket, "cc")
    root = _fake_cache_root(tmp_path / "root")
    meta = cc.push(client, root, _key(), base)
    assert meta["vllm"] == "0.32.0" and meta["archive_bytes"] > 0
    dest = tmp_path / "fetched"
    result = cc.fetch(client, _key(), base, dest)
    assert result.hit and result.bytes == meta["archive_bytes"]
    got = dest / "torch_compile_cache" / "torch_aot_compile" / "abc" / "rank_0_0" / "model"
    assert got.read_bytes() == b"\x00aot-artifact" * 1000
    marker = json.loads((dest / ".complete").read_text())
    assert marker["fetched_from"] == str(_key().location(base)) and marker["torch"] == "2.13.0+cpu"


def test_other_versions_are_a_miss_with_the_reason(bucket: str, tmp_path: Path) -> None:
    client = s3.make_client()
    base = s3.S3Uri(bucket, "cc")
    cc.push(client, _fake_cache_root(tmp_path / "root"), _key(vllm="0.31.0"), base)
    dest = tmp_path / "dest"
    result = cc.fetch(client, _key(), base, dest)
    assert not result.hit
    assert "no compile cache pushed for this key (vllm-0.32.0_torch-2.13.0+cpu" in result.reason
    assert "caches exist for vllm-0.31.0_torch-2.13.0+cpu only, not used" in result.reason
    assert not dest.exists()


def test_corrupt_or_half_pushed_cache_is_never_used(bucket: str, tmp_path: Path) -> None:
    client = s3.make_client()
    base = s3.S3Uri(bucket, "cc")
    key = _key()
    where = key.location(base)
    cc.push(client, _fake_cache_root(tmp_path / "root"), key, base)
    client.put_object(Bucket=bucket, Key=where.key(cc.ARCHIVE), Body=b"not the archive")
    dest = tmp_path / "dest"
    with pytest.raises(s3.S3Error, match="does not match its recorded sha256.*not used"):
        cc.fetch(client, key, base, dest)
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == ["root"]
    # A push that died after the archive but before meta.json: a miss, not a cache.
    client.delete_object(Bucket=bucket, Key=where.key(cc.META))
    assert not cc.fetch(client, key, base, dest).hit


def test_push_refuses_an_empty_root(bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no torch_compile_cache"):
        cc.push(s3.make_client(), tmp_path, _key(), s3.S3Uri(bucket, "cc"))


def test_cli_push_then_pull_by_model_name(bucket: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "cache", *args, "--model", "tiny-llama",
                               "--workdir", str(tmp_path / "work"), f"s3://{bucket}/cc"], capture_output=True,
                              text=True, timeout=120, cwd=REPO, env=dict(os.environ))

    miss = cli("pull", "--cache-dir", str(tmp_path / "pulled"))
    assert miss.returncode == 1 and "miss: no compile cache pushed for this key" in miss.stdout
    assert not (tmp_path / "pulled").exists()
    pushed = cli("push", "--cache-dir", str(_fake_cache_root(tmp_path / "root")))
    assert pushed.returncode == 0, pushed.stderr
    assert f"s3://{bucket}/cc/tiny-llama/vllm-" in pushed.stdout
    pulled = cli("pull", "--cache-dir", str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "torch_compile_cache" / "inductor_cache" / "fx.bin").read_bytes() == b"graph" * 500
    no_local = cli("push")
    assert no_local.returncode == 2 and "no complete local compile cache" in no_local.stderr


def test_cli_refuses_an_s3_key_without_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """`coldstart cache push|pull` names a series by the vLLM/torch versions: unknown versions are an error."""
    from pytest_coldstart.cli import main
    from pytest_coldstart.measure import runner

    monkeypatch.setattr(runner, "collect_environment", lambda repo: {"vllm": None, "torch": None})
    repo = Path(__file__).resolve().parents[2]
    code = main(["cache", "pull", "--model", "tiny-llama", "--registry", str(repo / "benchmarks"),
                 "--workdir", str(tmp_path), "s3://b/cache"])
    assert code == 2
    assert "vLLM and torch versions" in capsys.readouterr().err
