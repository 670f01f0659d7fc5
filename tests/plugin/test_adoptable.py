"""Installed into any suite: prefixed options only, packaged defaults, S3 cases skipped with advice."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

SUITE_WITH_ITS_OWN_MODEL = """
def pytest_addoption(parser):
    # vLLM's own tests/conftest.py defines --model too.
    parser.addoption("--model", action="store", default="facebook/opt-125m")
    parser.addoption("--optimization", action="store", default="O2")
    parser.addoption("--launcher", action="store", default="mp")
"""


def test_a_suite_with_its_own_model_option_is_unaffected(pytester):
    pytester.makeconftest(SUITE_WITH_ITS_OWN_MODEL)
    pytester.makepyfile(test_theirs="""
def test_model(request):
    assert request.config.getoption("--model") == "gpt2"
    assert request.config.getoption("--optimization") == "O2"
""")
    result = pytester.runpytest("--model", "gpt2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "conflicting option" not in result.stderr.str()


def test_the_plugin_never_registers_the_short_options(pytester):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("--model=tiny-llama")
    assert result.ret == 4 and "unrecognized arguments: --model=tiny-llama" in result.stderr.str()
    assert "--coldstart-model=MODEL" in pytester.runpytest("--help").stdout.str()


def test_short_options_come_from_a_suites_conftest(pytester):
    pytester.makeconftest("from pytest_coldstart.plugin.options import add_short_options\n\n"
                          "def pytest_addoption(parser):\n    add_short_options(parser)\n")
    pytester.makepyfile(test_suite="def test_x(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "--model=tiny-llama", "--optimization=baseline")
    assert "test_suite.py::test_x[tiny-llama-baseline-vllm-r0]" in result.stdout.str()


def test_packaged_registry_works_without_any_benchmarks_directory(pytester):
    """A repository with no benchmarks/ at all: models, optimizations and budgets come from the package."""
    pytester.makepyfile(test_suite="def test_x(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "--coldstart-model=llama-3-8b,tiny-llama")
    out = result.stdout.str()
    assert result.ret == 0, out + result.stderr.str()
    assert "test_suite.py::test_x[llama-3-8b-runai_streamer_sharded-vllm-r0]" in out
    assert "test_suite.py::test_x[tiny-llama-compile_cache-vllm-r0]" in out


def test_repository_registry_overrides_entry_by_entry(pytester):
    pytester.mkdir("benchmarks")
    pytester.path.joinpath("benchmarks", "models.toml").write_text(
        '[models.tiny-llama]\noptimizations = ["enforce_eager"]\n\n'
        '[models.my-model]\nsource = "hf:org/my-model"\nserved_name = "mine"\n')
    pytester.makepyfile(test_suite="def test_x(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "--coldstart-model=tiny-llama,my-model")
    out = result.stdout.str()
    assert "test_x[tiny-llama-enforce_eager-vllm-r0]" in out  # overridden key
    assert "test_x[tiny-llama-baseline" not in out
    assert "test_x[my-model-baseline-vllm-r0]" in out  # added entry


def test_named_files_that_do_not_exist_are_errors(pytester):
    pytester.makepyfile(test_suite="def test_x(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "--coldstart-budgets=nope.toml")
    assert result.ret == 4 and "budgets file not found" in result.stderr.str() and "nope.toml" in result.stderr.str()
    result = pytester.runpytest("--collect-only", "-q", "--coldstart-registry=nowhere", "--coldstart-model=tiny-llama")
    assert result.ret == 4 and "registry directory not found" in result.stderr.str()


def test_s3_cases_without_a_location_are_skipped_with_advice(pytester, monkeypatch):
    monkeypatch.delenv("COLDSTART_S3_URI", raising=False)
    pytester.makepyfile(test_suite="def test_x(coldstart):\n    raise AssertionError('never attempted')\n")
    result = pytester.runpytest("-rs", "--coldstart-model=llama-3-8b",
                                "--coldstart-optimization=runai_streamer,runai_streamer_sharded")
    result.assert_outcomes(skipped=2)
    assert "set COLDSTART_S3_URI=s3://BUCKET/PREFIX" in result.stdout.str()


def test_benchmarks_here_skip_llama_s3_with_advice(tmp_path):
    """The README's H100 command without S3 set up: skipped (visible with -rs), never attempted."""
    env = {k: v for k, v in os.environ.items() if k != "COLDSTART_S3_URI"}
    out = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-m", "coldstart", "--model", "llama-3-8b",
                          "--optimization", "runai_streamer", "-rs", "-p", "no:cacheprovider",
                          f"--coldstart-results={tmp_path / 'results'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 skipped" in out.stdout and "set COLDSTART_S3_URI" in out.stdout


def test_an_s3_location_binds_s3_names(pytester):
    pytester.makepyfile(test_suite="""
from pytest_coldstart.plugin import state_of

def test_x(coldstart):
    model = state_of(coldstart.item.config).registry.model("llama-3-8b")
    assert model.source_for("runai_streamer") == "s3://my-bucket/models/llama-3-8b"
    assert model.compile_cache_uri == "s3://my-bucket/models/compile-cache"
""")
    result = pytester.runpytest("-q", "--coldstart-model=llama-3-8b",
                                "--coldstart-s3=s3://my-bucket/models/", "--coldstart-optimization=runai_streamer")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest("--coldstart-model=llama-3-8b", "--coldstart-s3=ftp://x")
    assert result.ret == 4 and "expected s3://BUCKET" in result.stderr.str()


def test_the_tiny_model_s3_cases_bind_to_the_embedded_endpoint(pytester, monkeypatch):
    """No S3 location: the generated model's S3 cases run against the embedded endpoint, not skipped."""
    monkeypatch.delenv("COLDSTART_S3_URI", raising=False)
    pytester.makepyfile(test_suite="""
from pytest_coldstart.plugin import state_of

def test_x(coldstart):
    model = state_of(coldstart.item.config).registry.model(coldstart.case.model)
    assert model.source_for(coldstart.case.optimization).startswith("s3://coldstart-embedded/tiny-llama")
    assert model.compile_cache_uri == ""  # the compile cache stays local: the endpoint lives one session
""")
    result = pytester.runpytest("-q", "-rs", "--coldstart-model=tiny-llama", "--coldstart-optimization=runai_streamer,all")
    result.assert_outcomes(passed=2)
