"""Real GPU startup logs from public repositories, through the offline timeline (``coldstart timeline``).

The logs in tests/data/gpu-logs were written by vLLM on GPUs nobody on this team ran (sources, versions and
GPUs in tests/data/gpu-logs/SOURCES.md). For each one that reaches ready the named phases leave at most
max(2 s, 10 %) of the start unaccounted, the phases that vLLM version logs are observed, the version is
vLLM's own, and every self-reported figure is read exactly as the line prints it. A failing start names the
phase it died in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_coldstart.cli.logs import read_log
from pytest_coldstart.logs.grammar import parse_line
from pytest_coldstart.logs.timeline import (
    SUB_CONSTRUCTION,
    SUB_DRAFT_LOAD,
    SUB_POST_LOAD,
    SUB_TRANSFER,
    Timeline,
    timeline_from_log,
)

LOGS = Path(__file__).resolve().parents[1] / "data" / "gpu-logs"


@dataclass(frozen=True)
class Expected:
    version: str
    total_s: float
    phases: tuple[str, ...]
    reported: dict[str, object] = field(default_factory=dict)
    #: a failing start: the phase it died in (None: it reached ready)
    failed_in: str | None = None
    #: the failing start has a line that says so (V0 0.6 logs only the exception, at ERROR, which vLLM also
    #: does for errors it recovers from: no failure line, the phase in progress is still named)
    failure_logged: bool = True
    #: phases covered by the next observed one because this vLLM logs no line ending them
    includes: dict[str, tuple[str, ...]] = field(default_factory=dict)


EXPECTED: dict[str, Expected] = {
    "v0.4.3-rocm-ray-tp8-api-server.log": Expected(
        # Before 0.6 (the range starts there) but the one GPU Ray-executor start found that reaches
        # ready: 7 RayWorkerWrapper ranks, "[repeated 13x across cluster]" relayed out of order. 0.4.x logs no
        # "Starting to load model", so weights_load covers engine_init (named in includes).
        "0.4.3", 167.0, ("config", "weights_load", "kv_cache", "api_server"), {"model_load_gib": 95.5194},
        includes={"weights_load": ("engine_init",), "kv_cache": ("memory_profiling",), "api_server": ("warmup",)}),
    "v0.6.1-v0-offline-llm-codellama.log": Expected(
        "0.6.1", 25.0, ("config", "engine_init", "weights_load", "kv_cache", "cuda_graphs"),
        {"model_load_gib": 12.5562, "cuda_graph_capture_s": 11.0},
        includes={"kv_cache": ("memory_profiling",)}),
    "v0.6.4-v0-serve-pascal.log": Expected(
        "0.6.4.post1", 50.0, ("config", "engine_init", "weights_load", "memory_profiling", "kv_cache", "cuda_graphs",
                              "api_server"),
        {"model_load_gib": 2.3185, "kv_cache_gib": 3.6, "cuda_graph_capture_s": 23.0, "cuda_graph_gib": 0.24},
        includes={"api_server": ("warmup",)}),
    "v0.8.1-vlm2vec-1gpu.log": Expected(
        "0.8.1", 155.0, ("config", "engine_init", "weights_load", "torch_compile", "kv_cache", "cuda_graphs",
                         "warmup", "api_server"),
        # "Model loading took 7.9083 GB and 63.438900 seconds": 0.8.1 writes "GB" for the GiB value.
        {"model_load_gib": 7.9083, "model_load_s": 63.4389, "weights_load_s": 62.67, "torch_compile_s": 34.61,
         "dynamo_transform_s": 7.3, "inductor_compile_s": 27.31, "kv_cache_tokens": 28704,
         "cuda_graph_capture_s": 25.0, "cuda_graph_gib": 1.58, "init_engine_s": 70.27},
        includes={"kv_cache": ("memory_profiling",)}),
    "v0.8.3-tp2-offline-compile-cache.log": Expected(
        "0.8.3", 31.0, ("config", "engine_init", "weights_load", "torch_compile", "kv_cache", "cuda_graphs", "warmup"),
        # two TP ranks (VllmWorker rank=0/1): the slowest rank's figures
        {"weights_load_s": 1.49, "model_load_gib": 7.1217, "model_load_s": 2.85994, "torch_compile_s": 3.12,
         "compile_cache_hit": True, "kv_cache_tokens": 1096080, "cuda_graph_capture_s": 12.0, "cuda_graph_gib": 0.46,
         "init_engine_s": 19.73},
        includes={"kv_cache": ("memory_profiling",)}),
    "v0.9.2-rocm-gfx1201-offline-llm.log": Expected(
        "0.9.2rc2.dev1802+geb9d4de9e", 33.0,
        ("config", "engine_init", "weights_load", "torch_compile", "memory_profiling", "kv_cache", "cuda_graphs",
         "warmup"),
        {"weights_load_s": 3.32, "model_load_gib": 15.0547, "model_load_s": 3.65167, "torch_compile_s": 2.1,
         "inductor_load_s": 2.715, "compile_cache_hit": True, "kv_cache_gib": 9.62, "kv_cache_tokens": 78800,
         "cuda_graph_capture_s": 5.0, "cuda_graph_gib": 0.54, "init_engine_s": 17.84}),
    "v0.13.0-ngc-gb10-docker.log": Expected(
        "0.13.0+faa43dbf.nv26.01", 185.0,
        ("config", "engine_init", "weights_load", "torch_compile", "memory_profiling", "kv_cache", "cuda_graphs",
         "warmup", "api_server"),
        {"weights_load_s": 32.77, "model_load_gib": 4.9054, "model_load_s": 44.986674, "torch_compile_s": 92.2,
         "inductor_compile_s": 90.39, "kv_cache_gib": 11.15, "kv_cache_tokens": 208320,
         "cuda_graph_capture_s": 24.0, "cuda_graph_gib": 1.0, "init_engine_s": 127.33}),
    "v0.15.0-rocm-strixhalo-docker.log": Expected(
        "0.15.0rc3", 50.0,
        ("config", "engine_init", "weights_load", "torch_compile", "memory_profiling", "kv_cache", "cuda_graphs",
         "warmup", "api_server"),
        {"weights_load_s": 0.8, "model_load_gib": 0.84, "model_load_s": 1.16984, "torch_compile_s": 24.61,
         "inductor_compile_s": 21.67, "kv_cache_gib": 107.5, "kv_cache_tokens": 3522400, "cuda_graph_capture_s": 7.0,
         "cuda_graph_gib": 0.33, "init_engine_s": 40.11}),
    "v0.20.2-rtx5090-wsl-docker.log": Expected(
        # A log viewer's local-time prefix (UTC+2) before vLLM's own UTC stamps: the phases use vLLM's.
        "0.20.2", 491.0,
        ("config", "engine_init", "weights_download", "weights_load", "torch_compile", "memory_profiling",
         "kv_cache", "cuda_graphs", "warmup", "api_server"),
        {"weights_download_s": 321.02671, "weights_load_s": 27.32, "model_load_gib": 17.89,
         "model_load_s": 352.087376, "torch_compile_s": 59.41, "dynamo_transform_s": 11.24,
         "inductor_compile_s": 42.64, "compile_cache_hit": False, "kv_cache_gib": 4.58, "kv_cache_tokens": 286007,
         "cuda_graph_capture_s": 2.0, "cuda_graph_gib": 0.4, "init_engine_s": 97.86}),
    "v0.22.1-v2runner-tp2-rtx3090-docker.log": Expected(
        "0.22.1rc1.dev357+g74b5964f0", 112.0,
        ("config", "engine_init", "weights_load", "memory_profiling", "kv_cache", "warmup", "api_server"),
        # two TP ranks: the slowest rank's "Model loading took" (10.976225 s, TP1) gates readiness
        {"weights_load_s": 8.43, "model_load_gib": 14.59, "model_load_s": 10.976225, "kv_cache_gib": 4.43,
         "kv_cache_tokens": 413470, "init_engine_s": 9.1}),
    "v0.28.1-v2runner-sm75-offline-eager.log": Expected(
        "0.28.1rc1.dev50+gcac8a75a7.d20260828", 70.0,
        ("config", "engine_init", "weights_load", "memory_profiling", "kv_cache", "warmup"),
        {"weights_load_s": 0.79, "model_load_gib": 2.98, "model_load_s": 1.988948, "kv_cache_gib": 17.36,
         "kv_cache_tokens": 650208, "init_engine_s": 62.76}),
    "v0.25.0-mtp-tp2-sm120-docker.log": Expected(
        "0.25.0", 169.0,
        ("config", "engine_init", "weights_load", "memory_profiling", "kv_cache", "cuda_graphs", "warmup",
         "api_server"),
        # TP2 + MTP, breakable CUDA graphs (torch.compile off): rank 0 logs the target's transfer (18.05 s) and,
        # after "Loading drafter model...", the drafter's (1.32 s); the memory profiler logs no trial capture
        # on the V1 runner ("Profiling CUDA graph memory"), so the one capture line is the capture.
        {"weights_load_s": 18.05, "draft_weights_load_s": 1.32, "model_load_gib": 75.64, "model_load_s": 20.219445,
         "kv_cache_gib": 10.29, "kv_cache_tokens": 1993100, "cuda_graph_capture_s": 31.0, "cuda_graph_gib": 1.73,
         "init_engine_s": 132.64, "torch_compile_s": None, "compile_cache_hit": None}),
    "v0.27.1-mtp-a40-turboquant.log": Expected(
        "0.27.1", 271.0,
        ("config", "engine_init", "weights_load", "torch_compile", "memory_profiling", "kv_cache", "cuda_graphs",
         "warmup", "api_server"),
        # The newest real `vllm serve` GPU log found (A40, MTP num_speculative_tokens=3): target 3.84 s and drafter
        # 0.68 s loads, backbone and eagle_head compile units. --kv-cache-memory-bytes: vLLM logs "reserved 5.5 GiB
        # memory for KV Cache ... skipped memory profiling" instead of "Available KV cache memory". The uvicorn
        # lines carry no stamp: ready is the last stamped line ("Starting vLLM server on", after a 24 s
        # multimodal warmup in the API server).
        {"weights_load_s": 3.84, "draft_weights_load_s": 0.68, "model_load_gib": 20.54, "model_load_s": 8.815411,
         "torch_compile_s": 99.25, "dynamo_transform_s": 15.52, "inductor_compile_s": 65.59,
         "compile_cache_hit": False, "kv_cache_gib": 5.5, "kv_cache_tokens": 286466, "cuda_graph_capture_s": 4.0,
         "cuda_graph_gib": 0.08, "init_engine_s": 180.37,
         "torch_compile_units": [{"unit": "backbone", "s": 90.95}, {"unit": "eagle_head", "s": 8.3}]}),
    "v0.23.1-mtp-docker.log": Expected(
        "0.23.1rc1.dev531+ga65f93fb2", 738.0,
        ("config", "engine_init", "weights_load", "torch_compile", "memory_profiling", "kv_cache", "cuda_graphs",
         "warmup"),
        # MTP (num_speculative_tokens=2): the target's transfer (123.52 s) and the drafter's (11.22 s) both kept,
        # one "Model loading took" for both; two compile units (backbone 70.93 s, eagle_head 11.71 s) summed.
        # The log ends at "Starting vLLM server on" (the poster kept no uvicorn lines): api_server unobserved.
        {"weights_load_s": 123.52, "draft_weights_load_s": 11.22, "model_load_gib": 20.57,
         "model_load_s": 139.645153, "torch_compile_s": 82.64, "dynamo_transform_s": 11.01,
         "inductor_compile_s": 54.99, "compile_cache_hit": False, "kv_cache_gib": 48.6, "kv_cache_tokens": 1394129,
         "cuda_graph_capture_s": 4.0, "cuda_graph_gib": 0.23, "init_engine_s": 535.77,
         "torch_compile_units": [{"unit": "backbone", "s": 70.93}, {"unit": "eagle_head", "s": 11.71}]}),
    "v0.22.1-mtp-gb10-docker-compose-failed.log": Expected(
        "0.22.1rc1.dev26+g4721bb3aa", 446.0,
        ("config", "engine_init", "weights_download", "weights_load", "torch_compile", "memory_profiling",
         "kv_cache", "cuda_graphs", "warmup"),
        # MTP: the target's transfer (167.46 s) and the drafter's (23.75 s) both kept; one "Model loading took"
        {"weights_download_s": 80.824437, "weights_load_s": 167.46, "draft_weights_load_s": 23.75,
         "model_load_gib": 21.93, "model_load_s": 281.243837, "torch_compile_s": 38.9, "kv_cache_gib": 73.13,
         "kv_cache_tokens": 6312658, "cuda_graph_capture_s": 5.0, "cuda_graph_gib": 0.32, "init_engine_s": 128.32},
        failed_in="api_server"),
    "v0.6.6-v0-serve-failed-engine-init.log": Expected(
        "0.6.6", 9.0, ("config",), {}, failed_in="engine_init", failure_logged=False),
    "v0.1.dev8023-rocm-tp2-failed-worker-init.log": Expected(
        # a source build without tags: vLLM says "0.1.dev8023+g894bed8", and that is what is reported
        "0.1.dev8023+g894bed8", 43.0, ("config",), {}, failed_in="engine_init"),
    "v0.16.0-rocm-ray-tp2-2node-failed.log": Expected(
        # Ray executor, TP2 over two GPU nodes: the head's EngineCore relays both workers' lines (one with ip=)
        "0.16.0rc1.dev55+g8980001c9.d20260131", 9.0, ("config",), {}, failed_in="engine_init"),
    "v0.9.2-ascend-ray-tp16-2node-failed.log": Expected(
        "0.9.2", 69.0, ("config", "engine_init"), {}, failed_in="weights_load"),
}


@pytest.fixture(scope="module")
def timelines() -> dict[str, Timeline]:
    out = {}
    for name in EXPECTED:
        text = read_log(LOGS / name, "timeline")  # the code behind `coldstart timeline FILE`
        assert text is not None
        out[name] = timeline_from_log(text)
    return out


def test_every_collected_log_has_expectations() -> None:
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_version_is_vllms_own(timelines: dict[str, Timeline], name: str) -> None:
    assert timelines[name].reported["vllm_version"] == EXPECTED[name].version


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.failed_in is None))
def test_unaccounted_is_at_most_2s_or_10_percent(timelines: dict[str, Timeline], name: str) -> None:
    t = timelines[name]
    assert t.total_ready_s == EXPECTED[name].total_s
    assert t.unaccounted_s is not None and t.unaccounted_s <= max(2.0, 0.10 * t.total_ready_s)
    assert t.failure is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_phases_observed_and_the_rest_not(timelines: dict[str, Timeline], name: str) -> None:
    t, e = timelines[name], EXPECTED[name]
    assert tuple(p.name for p in t.phases if p.observed) == e.phases
    assert {p.name: p.includes for p in t.phases if p.includes} == e.includes
    for p in t.phases:
        if not p.observed:  # "not observed" is never zero
            assert p.duration_s is None and p.start_s is None and str(p.source) == "not_observed"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_self_reported_values_are_exact(timelines: dict[str, Timeline], name: str) -> None:
    reported = timelines[name].reported
    for key, value in EXPECTED[name].reported.items():
        assert reported[key] == value, key


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.failed_in is not None))
def test_a_failing_start_names_the_phase_it_died_in(timelines: dict[str, Timeline], name: str) -> None:
    t, e = timelines[name], EXPECTED[name]
    assert t.phase_in_progress == e.failed_in
    if e.failure_logged:
        assert t.failure is not None and t.failed_in == e.failed_in
        assert t.to_dict()["failed_in"] == e.failed_in
    else:
        assert t.failure is None and t.failed_in is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_weights_load_parts_sum_to_the_phase(timelines: dict[str, Timeline], name: str) -> None:
    t = timelines[name]
    load = t.phase("weights_load")
    parts = t.sub_phases.get("weights_load", ())
    if "weights_load_s" not in t.reported or t.reported["weights_load_s"] is None or not load.observed:
        assert not parts
        return
    assert load.duration_s is not None
    assert sum(p.duration_s or 0.0 for p in parts) == pytest.approx(load.duration_s)
    names = [p.name for p in parts]
    assert names[:3] == [SUB_CONSTRUCTION, SUB_TRANSFER, SUB_POST_LOAD]
    transfer = parts[1]
    assert transfer.reported_s == t.reported["weights_load_s"]


def test_mtp_drafter_load_is_a_sub_phase_of_the_load(timelines: dict[str, Timeline]) -> None:
    t = timelines["v0.22.1-mtp-gb10-docker-compose-failed.log"]
    parts = {p.name: p for p in t.sub_phases["weights_load"]}
    assert parts[SUB_TRANSFER].duration_s == 167.46  # 21:37:32.54 -> 21:40:20, the target's own figure
    draft = parts[SUB_DRAFT_LOAD]
    assert draft.reported_s == 23.75 and draft.duration_s == 26.0  # "Loading drafter model..." 21:40:25 -> 21:40:51


def test_real_mtp_start_keeps_the_drafter_apart(timelines: dict[str, Timeline]) -> None:
    """vLLM 0.23.1 with MTP: target and drafter loads are parts of weights_load, and the drafter's compile unit
    is named from its cache directory (".../rank_0_0/eagle_head"), the only line that names it before 0.32."""
    t = timelines["v0.23.1-mtp-docker.log"]
    parts = {p.name: p for p in t.sub_phases["weights_load"]}
    assert parts[SUB_TRANSFER].reported_s == 123.52 and parts[SUB_TRANSFER].end_s == 168.0  # 22:00:59
    draft = parts[SUB_DRAFT_LOAD]
    assert draft.reported_s == 11.22 and draft.duration_s == 12.0  # "Loading drafter model..." 22:01:01 -> 22:01:13
    assert t.phase("weights_load").duration_s == 140.0
    # One "Graph capturing finished" (V1 runner: logger.info_once covers target and drafter graphs): not split.
    assert "draft_cuda_graph_capture_s" not in t.reported and "cuda_graphs" not in t.sub_phases


def test_real_tp2_mtp_start_splits_the_load_where_target_and_drafter_share_a_second(
        timelines: dict[str, Timeline]) -> None:
    """vLLM 0.25.0, TP2 + MTP: the target's "Loading weights took 18.05 seconds" and "Loading drafter model..."
    are both stamped 02:33:58; the target's transfer still ends there and the drafter's load follows it."""
    t = timelines["v0.25.0-mtp-tp2-sm120-docker.log"]
    parts = {p.name: p for p in t.sub_phases["weights_load"]}
    assert (parts[SUB_TRANSFER].start_s, parts[SUB_TRANSFER].end_s) == (15.95, 34.0)  # 18.05 s before 02:33:58
    assert parts[SUB_DRAFT_LOAD].reported_s == 1.32 and parts[SUB_DRAFT_LOAD].duration_s == 2.0  # -> 02:34:00
    assert t.phase("torch_compile").duration_s is None  # breakable CUDA graphs: vLLM's compile is off


def test_v2_runner_trial_capture_while_profiling_memory_is_not_the_capture() -> None:
    """The V2 model runner (0.21+ CUDA graph memory profiling, vllm/v1/worker/gpu/cudagraph_utils.py) runs
    capture_model(profile_only=True) before the KV cache is sized and logs "Graph capturing finished" for that
    trial too; the real capture follows "GPU KV cache size". Lines from vLLM 0.32's own format strings (no real
    0.29+ GPU log was found): the trial is kept apart and is neither the capture's figure nor a drafter's."""
    e = "(EngineCore pid=7) INFO 10-02 "
    text = "\n".join([
        e + "11:00:00 [core.py:123] Initializing a V1 LLM engine (v0.32.0) with config: model='m'",
        e + "11:00:01 [gpu_worker.py:441] Using V2 Model Runner",
        e + "11:00:02 [model_runner.py:392] Loading model from scratch...",
        e + "11:00:20 [default_loader.py:502] Loading weights took 17.50 seconds",
        e + "11:00:21 [model_runner.py:424] Model loading took 15.2 GiB memory and 19.100000 seconds",
        e + "11:00:31 [model_runner.py:1127] Graph capturing finished in 6 secs, took 0.41 GiB",
        e + "11:00:32 [gpu_worker.py:760] Available KV cache memory: 40.1 GiB",
        e + "11:00:32 [kv_cache_utils.py:2328] GPU KV cache size: 1,000,000 tokens, Maximum concurrency for 8,192 "
            "tokens per request: 122.07x",
        e + "11:00:37 [model_runner.py:1127] Graph capturing finished in 5 secs, took 0.40 GiB",
        e + "11:00:38 [core.py:403] init engine (profile, create kv cache, warmup model) took 37.50 s",
    ]) + "\n"
    t = timeline_from_log(text)
    assert t.reported["cuda_graph_capture_s"] == 5.0 and t.reported["cuda_graph_gib"] == 0.4
    assert t.reported["cuda_graph_profile_capture_s"] == 6.0
    assert "draft_cuda_graph_capture_s" not in t.reported and "cuda_graphs" not in t.sub_phases
    graphs, profiling = t.phase("cuda_graphs"), t.phase("memory_profiling")
    assert (graphs.start_s, graphs.end_s) == (32.0, 37.0)
    assert (profiling.start_s, profiling.end_s) == (21.0, 32.0)  # the trial capture is part of profiling
    assert t.unaccounted_s == 0.0


def test_ray_two_node_lines_are_the_workers_own() -> None:
    """Ray nests the worker's prefix (with the remote node's ip) inside the EngineCore's; both are prefixes."""
    raw = ("(EngineCore_DP0 pid=17822) (RayWorkerWrapper pid=9409, ip=192.168.100.2) INFO 01-31 14:21:03 "
           "[parallel_state.py:1234] world_size=2 rank=1 local_rank=0 distributed_init_method=tcp://192.168.100.1:"
           "49483 backend=nccl")
    record = parse_line(raw)
    assert record.processes == ("EngineCore_DP0", "RayWorkerWrapper") and record.level == "INFO"
    assert record.message.startswith("world_size=2 rank=1")


def test_headless_worker_version_is_vllms_not_nccls() -> None:
    """A `--headless` worker (0.25+) logs no API banner and no engine banner; NCCL's own banner must not be
    taken for vLLM's version (cli/serve.py: "Launching vLLM (v%s) headless multiproc executor, ...")."""
    text = "\n".join([
        "node-b:4242:4242 [0] NCCL INFO NCCL version 2.30.7+cuda13.0",
        "INFO 10-02 11:00:00 [serve.py:225] Launching vLLM (v0.25.2) headless multiproc executor, with head node "
        "address 10.0.0.1:29501 for torch.distributed process group.",
        "(Worker_PP1 pid=88) INFO 10-02 11:00:01 [pynccl.py:113] vLLM is using nccl==2.30.7",
        "(Worker_PP1 pid=88) INFO 10-02 11:00:02 [gpu_model_runner.py:3562] Starting to load model m...",
        "(Worker_PP1 pid=88) INFO 10-02 11:00:30 [default_loader.py:397] Loading weights took 27.50 seconds",
        "(Worker_PP1 pid=88) INFO 10-02 11:00:31 [gpu_model_runner.py:3659] Model loading took 70.1 GiB memory "
        "and 28.917 seconds",
    ]) + "\n"
    t = timeline_from_log(text)
    assert t.reported["vllm_version"] == "0.25.2"
    assert t.reported["weights_load_s"] == 27.5 and t.phase("weights_load").duration_s == 29.0
    assert t.phase("engine_init").observed and t.unaccounted_s == 0.0


@pytest.mark.parametrize("raw", [
    "vllm-1  | (APIServer pid=1) INFO 09-11 06:39:15 [api_server.py:1880] Starting vLLM API server 0 on http://x",
    "2026-06-01T21:35:33.123456789Z (APIServer pid=1) INFO 09-11 06:39:15 [api_server.py:1880] Starting vLLM API "
    "server 0 on http://x",
    "2026-05-01 19:08:52.245 | (APIServer pid=1) INFO 09-11 06:39:15 [api_server.py:1880] Starting vLLM API server 0 "
    "on http://x",
    "Aug 18 14:15:04 llm python3[27876]: (APIServer pid=1) INFO 09-11 06:39:15 [api_server.py:1880] Starting vLLM "
    "API server 0 on http://x",
])
def test_container_and_collector_prefixes_are_not_vllms(raw: str) -> None:
    record = parse_line(raw)
    assert record.processes == ("APIServer",) and record.timestamp is not None
    assert record.message.startswith("Starting vLLM API server 0")
