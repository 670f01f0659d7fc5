from datetime import datetime

import pytest

from pytest_coldstart.logs.grammar import match_markers, parse_line


def test_ray_nested_prefixes_ansi_and_repeated():
    raw = ("\x1b[36m(ServeReplica:default:LLMServer:llama pid=126216)\x1b[0m \x1b[1;36m(EngineCore_DP0 pid=126656)"
           "\x1b[0;0m \x1b[36m(RayWorkerWrapper pid=126782)\x1b[0m INFO 10-15 11:56:52 [gpu_model_runner.py:2906] "
           "Model loading took 32.8601 GiB and 213.541107 seconds\x1b[32m [repeated 3x across cluster]\x1b[0m")
    record = parse_line(raw)
    assert record.processes == ("ServeReplica:default:LLMServer:llama", "EngineCore_DP0", "RayWorkerWrapper")
    assert record.timestamp == datetime(2000, 10, 15, 11, 56, 52)
    assert record.repeated == 3
    assert record.message == "Model loading took 32.8601 GiB and 213.541107 seconds"
    assert match_markers(record) == [("model_loaded", {"model_load_gib": "32.8601", "model_load_s": "213.541107"})]


def test_ray_ip_and_anonymous_pid_prefix():
    record = parse_line("(pid=126783, ip=10.0.0.5) INFO 10-15 11:53:00 [__init__.py:224] Automatically detected "
                        "platform cuda.")
    assert record.processes == ("pid=126783",)
    assert record.level == "INFO"


def test_uvicorn_line_has_no_timestamp():
    record = parse_line("(APIServer pid=9) INFO:     Application startup complete.")
    assert record.timestamp is None and not record.is_vllm_logger
    assert [name for name, _ in match_markers(record)] == ["app_started"]


def test_vllm_030_prefixes_tqdm_before_carriage_return():
    record = parse_line("(Worker pid=7) \rLoading safetensors checkpoint shards: 100% Completed | 1/1\r")
    assert record.processes == ("Worker",)
    assert record.message.startswith("Loading safetensors")


@pytest.mark.parametrize(("message", "marker", "groups"), [
    ("torch.compile takes 60.79 s in total", "compile_done", {"torch_compile_s": "60.79", "compile_verb": "takes"}),
    ("[backbone] torch.compile took 7.10 s in total", "compile_done",
     {"torch_compile_s": "7.10", "compile_verb": "took", "compile_tag": "backbone"}),
    ("init engine (profile, create kv cache, warmup model) took 29.97 s", "init_engine_done", {"init_engine_s": "29.97"}),
    ("init engine (profile, create kv cache, warmup model) took 91.82 seconds", "init_engine_done",
     {"init_engine_s": "91.82"}),
    ("CPU KV cache size: 3,275,136 tokens, Maximum concurrency for 512 tokens per request: 6396.75x", "kv_size",
     {"kv_cache_tokens": "3,275,136"}),
    ("Graph capturing finished in 16 secs, took 1.05 GiB", "graph_capture_done",
     {"cuda_graph_capture_s": "16", "cuda_graph_gib": "1.05"}),
    ("[RunAI Streamer] Overall time to stream 32.9 GiB of all files: 25.6s, 1.3 GiB/s", "stream_done",
     {"stream_size": "32.9", "stream_unit": "GiB", "stream_s": "25.6"}),
    ("[RunAI Streamer] Overall time to stream 1.6 MiB of all files to cpu: 0.05s, 32.1 MiB/s", "stream_done",
     {"stream_size": "1.6", "stream_unit": "MiB", "stream_s": "0.05"}),
    ("Initializing a V1 LLM engine (v0.32.0) with config: model='x'", "engine_init",
     {"vllm_version": "0.32.0", "engine_kind": "V1"}),
    ("Time spent downloading weights for meta-llama/Meta-Llama-3-70B: 196.465363 seconds", "download_done",
     {"weights_download_s": "196.465363"}),
])
def test_marker_formats_across_versions(message, marker, groups):
    found = dict(match_markers(parse_line(f"INFO 11-22 04:53:18 [x.py:1] {message}")))
    assert found[marker] == groups


def test_logo_banner_gives_version():
    record = parse_line("(APIServer pid=2158) INFO 11-22 04:53:18 [api_utils.py:347]  ▄▄ ▄█ █     █     █ ▀▄▀ █  "
                        "version 0.32.0")
    assert dict(match_markers(record))["banner"] == {"vllm_version": "0.32.0"}
