"""A recorded 8xH100 start through the whole pytest path: ``pytest benchmarks -m coldstart --coldstart-launcher replay``.

Anyscale's Llama-3-70B (TP4) Ray Serve LLM start (tests/data/ray-serve-llm-h100/llama70b-base.log) is
replayed 25x faster than recorded (~15 s): arrival stamps, Ray Serve phase rules, the packaged
llama-3-70b budgets, TTFT, the result file and the summary all run as for a live start; the phases
match ``coldstart ray-timeline`` of the same log within the replay's resolution, the result says it
was replayed, and the asv history leaves it out. A tighter budget file makes the same replay fail.
Anyscale's Qwen3-235B-A22B (TP8) baseline start from the same 8xH100 matrix (qwen235B-base.log, ~1005 s)
runs the same way, 60x faster, against the packaged qwen-3-235b budgets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import H100_LOGS, REPO

LOG = H100_LOGS / "llama70b-base.log"
QWEN_LOG = H100_LOGS / "qwen235B-base.log"
QWEN_CC_LOG = H100_LOGS / "qwen235B-compile-cache.log"


def _session(tmp_path: Path, *extra: str, speed: str = "25", log: Path = LOG,
             model: str = "llama-3-70b", optimization: str = "baseline") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "benchmarks", "-m", "coldstart", "-p", "no:cacheprovider",
            "--coldstart-launcher", "replay", "--coldstart-replay-log", str(log), "--coldstart-replay-speed", speed,
            "--coldstart-model", model, "--coldstart-optimization", optimization,
            "--coldstart-results", str(tmp_path / "results"), "--coldstart-workdir", str(tmp_path / "work"), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)


def _offline(log: Path = LOG) -> dict:
    out = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "ray-timeline", "--json", str(log)],
                         capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    return json.loads(out.stdout)


def _replayed(tmp_path: Path, out: subprocess.CompletedProcess[str], log: Path, model: str, speed: float) -> dict:
    """The one result a replay session wrote, checked against ``coldstart ray-timeline`` of the same log."""
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    runs = list((tmp_path / "results" / "runs").glob("*.json"))
    assert len(runs) == 1
    result = json.loads(runs[0].read_text())
    assert result["exit_status"] == "ok" and result["launcher"] == "replay" and result["model"] == model
    replay = result["replay"]
    assert replay["rules"] == "ray" and replay["speed"] == speed and Path(replay["log"]) == log
    res = replay["resolution_s"]
    # One /health poll (0.1 s) plus the checks' own time, as measured: the most the ready edge trails "up".
    assert 0.1 * speed <= res["ready_s"] < 1.0 * speed and res["line_lag_s"] < res["ready_s"]

    # The live phase table matches the offline reading of the same log.
    offline = {p["name"]: p for p in _offline(log)["phases"]}
    live = {p["name"]: p for p in result["phases"]}
    assert list(live) == list(offline)
    for name, phase in offline.items():
        if phase["duration_s"] is None:
            assert name == "first_token" or live[name]["duration_s"] is None, name
            continue
        assert abs(live[name]["start_s"] - phase["start_s"]) <= res["line_lag_s"] + 1e-6, name
        assert abs(live[name]["end_s"] - phase["end_s"]) <= res["line_lag_s"] + 1e-6, name
    return result


def test_a_recorded_70b_start_replays_through_the_benchmarks(tmp_path):
    out = _session(tmp_path)
    result = _replayed(tmp_path, out, LOG, "llama-3-70b", 25.0)
    res = result["replay"]["resolution_s"]
    # Ready when the log says the engine started (374 s), plus at most one /health poll.
    assert 374 - res["line_lag_s"] <= result["total_ready_s"] <= 374 + res["ready_s"] + res["line_lag_s"]
    assert result["reported"]["weights_download_s"] == 196.465363  # vLLM's own figures, as logged
    assert result["ttft_s"] is not None

    # The packaged llama-3-70b budgets were applied, and the asv history got nothing.
    assert "llama-3-70b / baseline / replay" in out.stdout
    summary = out.stdout[out.stdout.index("coldstart summary"):]
    assert "250   ok" in summary and "440   ok" in summary  # weights_download, total_ready_s budgets
    assert "1 replayed start(s) not recorded into the asv history" in out.stdout
    assert not list((tmp_path / "results").glob("*/machine.json"))


# (optimization, log, ready s, vLLM's download / compile figures, cache hit, phases from the log's stamps, budgets)
QWEN_STARTS = [
    ("baseline", QWEN_LOG, 1005, 724.106366, 113.04, False,
     (("weights_download", 725.0), ("torch_compile", 120.0), ("cuda_graphs", 45.0)), ("900", "45", "140", "55", "1235")),
    ("compile_cache", QWEN_CC_LOG, 971, 682.151174, 22.71, True,
     (("weights_download", 683.0), ("torch_compile", 37.0), ("cuda_graphs", 44.0)), ("860", "45", "48", "55", "1125")),
]


@pytest.mark.parametrize(("optimization", "log", "ready_s", "download_s", "compile_s", "hit", "logged", "budgets"),
                         QWEN_STARTS, ids=[s[0] for s in QWEN_STARTS])
def test_a_recorded_qwen_235b_start_replays_against_its_budgets(tmp_path, optimization, log, ready_s, download_s,
                                                                compile_s, hit, logged, budgets):
    """The qwen-3-235b budgets on real 8xH100 starts: ~700 s of hub download, 8 TP ranks, 44 s of graphs; with
    the compile cache vLLM reports 22.7 s of compile but the phase between the log's lines is 37 s (the budget
    is set on the phase)."""
    out = _session(tmp_path, speed="60", log=log, model="qwen-3-235b", optimization=optimization)
    result = _replayed(tmp_path, out, log, "qwen-3-235b", 60.0)
    res = result["replay"]["resolution_s"]
    # "Supported tasks" in the log is when the replay answers /health.
    assert ready_s - res["line_lag_s"] <= result["total_ready_s"] <= ready_s + res["ready_s"] + res["line_lag_s"]
    reported = result["reported"]
    assert reported["weights_download_s"] == download_s and reported["cuda_graph_capture_s"] == 44.0
    assert reported["torch_compile_s"] == compile_s and reported["compile_cache_hit"] is hit
    phases = {p["name"]: p["duration_s"] for p in result["phases"]}
    for name, logged_s in logged:
        assert abs(phases[name] - logged_s) <= 2 * res["line_lag_s"] + 1e-6, name  # the log's own 1 s stamps

    assert f"qwen-3-235b / {optimization} / replay" in out.stdout
    summary = out.stdout[out.stdout.index("coldstart summary"):]
    for budget in budgets:  # weights_download, weights_load, torch_compile, cuda_graphs, total_ready_s: all within
        assert f"{budget}   ok" in summary, budget
    assert "exceeded" not in summary
    assert "1 replayed start(s) not recorded into the asv history" in out.stdout


def test_a_budget_the_recorded_start_breaks_fails_the_replay(tmp_path):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[llama-3-70b.baseline]\nweights_download = 100\n')
    out = _session(tmp_path, "--coldstart-budgets", str(budgets), "--coldstart-asv", "off", speed="60")
    assert out.returncode == 1, out.stdout[-3000:]
    assert "1 budget(s) exceeded" in out.stdout and "weights_download" in out.stdout


def test_bad_replay_options_are_refused_before_anything_runs(pytester):
    for flag, value, said in (("--coldstart-replay-speed", "0", "finite and > 0"),
                              ("--coldstart-replay-speed", "inf", "finite and > 0"),
                              ("--coldstart-replay-log", "/no/such.log", "is not a file"),
                              ("--coldstart-replay-record", "maybe", "on or off")):
        result = pytester.runpytest(f"{flag}={value}")
        assert result.ret == 4, (flag, value)  # pytest's usage error
        assert flag in result.stderr.str() and said in result.stderr.str()


def test_help_lists_the_replay_options(pytester):
    out = pytester.runpytest("--help").stdout.str()
    for flag in ("--coldstart-replay-log", "--coldstart-replay-speed", "--coldstart-replay-record"):
        assert flag in out
