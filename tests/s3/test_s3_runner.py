"""How the runner prepares S3 starts, short of spawning vLLM (the matrix test does that)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="the s3 extra is not installed: pip install -e .[s3]")

from pytest_coldstart import s3
from pytest_coldstart.errors import ConfigError
from pytest_coldstart.registry import load_registry
from pytest_coldstart.runner import Case, ColdStartRunner, Settings
from tests.conftest import REPO


@pytest.fixture
def runner(s3_env, tmp_path: Path) -> ColdStartRunner:
    registry = load_registry(REPO / "benchmarks")
    client = s3.make_client()
    for bucket in ("coldstart-models", "coldstart-compile-cache"):
        s3.ensure_bucket(client, bucket)
    settings = Settings(registry_dir=REPO / "benchmarks", results_dir=tmp_path / "results",
                        workdir=tmp_path / "work", repo_dir=REPO)
    return ColdStartRunner(settings, registry)


def test_runai_streamer_start_gets_the_s3_uri_and_its_env(runner: ColdStartRunner) -> None:
    first = runner._prepare(Case("tiny-llama", "runai_streamer"))
    assert first.model_ref == "s3://coldstart-models/tiny-llama"
    assert first.engine_args[-2:] == ("--load-format", "runai_streamer")
    assert first.env["RUNAI_STREAMER_LOG_TO_STDERR"] == "1" and first.env["HF_HUB_OFFLINE"] == "1"
    assert first.cache["weights_source"]["action"] == "uploaded"
    assert first.cache["weights_source"]["kind"] == "model" and first.cache["weights_source"]["files"] == 6
    assert first.hygiene.mode == "cold" and first.hygiene.local_model_dir is None
    runner.source_reports.clear()
    again = runner._prepare(Case("tiny-llama", "runai_streamer"))
    assert again.cache["weights_source"]["action"] == "verified"
    assert again.env["VLLM_ASSETS_CACHE"] == first.env["VLLM_ASSETS_CACHE"]  # stable: vLLM hashes it
    assert again.env["VLLM_CACHE_ROOT"] != first.env["VLLM_CACHE_ROOT"]  # cold: fresh each time


def test_compile_cache_start_is_keyed_on_s3(runner: ColdStartRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = runner._prepare(Case("tiny-llama", "compile_cache"))
    assert prepared.cache["store"] == "s3" and prepared.cache["uri"] == "s3://coldstart-compile-cache"
    assert prepared.cache["key"]["vllm"] == runner.environment["vllm"]
    assert Path(prepared.env["VLLM_CACHE_ROOT"]).parent == prepared.cleanup  # filled by the fetch, per run
    monkeypatch.setenv("COLDSTART_COMPILE_CACHE", "local")
    local = runner._prepare(Case("tiny-llama", "compile_cache"))
    assert local.cache["store"] == "local" and "key" not in local.cache
    assert "/cache/compile/" in local.env["VLLM_CACHE_ROOT"]


def test_s3_source_needs_a_runai_load_format(runner: ColdStartRunner) -> None:
    model = runner.registry.model("tiny-llama")
    broken = dataclasses.replace(model, sources=(("baseline", "s3://coldstart-models/tiny-llama"),))
    runner.registry.models["tiny-llama"] = broken
    with pytest.raises(ConfigError, match="only --load-format runai_streamer or runai_streamer_sharded"):
        runner._prepare(Case("tiny-llama", "baseline"))
