"""How the runner prepares S3 starts, short of spawning vLLM (the matrix test does that)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="the s3 extra is not installed: pip install -e .[s3]")

from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.registry import load_registry
from tests.conftest import REPO


@pytest.fixture
def runner(bucket: str, tmp_path: Path) -> ColdStartRunner:
    registry = load_registry(REPO / "benchmarks")
    # The repo's registry, pointed at this test's own bucket (the endpoint is shared by the session).
    model = registry.models["tiny-llama"]
    registry.models["tiny-llama"] = dataclasses.replace(
        model, compile_cache_uri=f"s3://{bucket}/cc",
        sources=tuple((opt, uri.replace("s3://coldstart-models/", f"s3://{bucket}/")) for opt, uri in model.sources))
    settings = Settings(registry_dir=REPO / "benchmarks", results_dir=tmp_path / "results",
                        workdir=tmp_path / "work", repo_dir=REPO)
    return ColdStartRunner(settings, registry)


def test_runai_streamer_start_gets_the_s3_uri_and_its_env(runner: ColdStartRunner) -> None:
    first = runner.plan(Case("tiny-llama", "runai_streamer"))
    assert first.model_ref == f"s3://{runner.registry.models['tiny-llama'].compile_cache_uri[5:-3]}/tiny-llama"
    assert first.engine_args[-2:] == ("--load-format", "runai_streamer")
    assert first.env["RUNAI_STREAMER_LOG_TO_STDERR"] == "1" and first.env["HF_HUB_OFFLINE"] == "1"
    assert first.cache.record["weights_source"]["action"] == "uploaded"
    assert first.cache.record["weights_source"]["kind"] == "model" and first.cache.record["weights_source"]["files"] == 6
    assert first.cache.hygiene.mode == "cold" and first.cache.hygiene.local_model_dir is None
    again = runner.plan(Case("tiny-llama", "runai_streamer"))
    assert again.cache.record["weights_source"]["action"] == "verified"
    assert again.env["VLLM_ASSETS_CACHE"] == first.env["VLLM_ASSETS_CACHE"]  # stable: vLLM hashes it
    assert again.env["VLLM_CACHE_ROOT"] != first.env["VLLM_CACHE_ROOT"]  # cold: fresh each time


def test_compile_cache_start_is_keyed_on_s3(runner: ColdStartRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = runner.plan(Case("tiny-llama", "compile_cache"))
    assert prepared.cache.record["store"] == "s3" and prepared.cache.record["uri"].endswith("/cc")
    assert prepared.cache.record["key"]["vllm"] == runner.environment["vllm"]
    assert Path(prepared.env["VLLM_CACHE_ROOT"]).parent == prepared.run_root  # filled by the fetch, per run
    monkeypatch.setenv("COLDSTART_COMPILE_CACHE", "local")
    local = runner.plan(Case("tiny-llama", "compile_cache"))
    assert local.cache.record["store"] == "local" and "key" not in local.cache.record
    assert "/cache/compile/" in local.env["VLLM_CACHE_ROOT"]


def test_s3_source_needs_a_runai_load_format(runner: ColdStartRunner) -> None:
    model = runner.registry.model("tiny-llama")
    broken = dataclasses.replace(model, sources=(("baseline", model.compile_cache_uri + "/tiny-llama"),))
    runner.registry.models["tiny-llama"] = broken
    with pytest.raises(ConfigError, match="only --load-format runai_streamer or runai_streamer_sharded"):
        runner.plan(Case("tiny-llama", "baseline"))
