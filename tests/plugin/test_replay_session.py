"""A recorded 8xH100 start through the whole pytest path: ``pytest benchmarks -m coldstart --coldstart-launcher replay``.

Anyscale's Llama-3-70B (TP4) Ray Serve LLM start (tests/data/ray-serve-llm-h100/llama70b-base.log) is
replayed 25x faster than recorded (~15 s): arrival stamps, Ray Serve phase rules, the packaged
llama-3-70b budgets, TTFT, the result file and the summary all run as for a live start; the phases
match ``coldstart ray-timeline`` of the same log within the replay's resolution, the result says it
was replayed, and the asv history leaves it out. A tighter budget file makes the same replay fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import H100_LOGS, REPO

LOG = H100_LOGS / "llama70b-base.log"


def _session(tmp_path: Path, *extra: str, speed: str = "25") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "benchmarks", "-m", "coldstart", "-p", "no:cacheprovider",
            "--coldstart-launcher", "replay", "--coldstart-replay-log", str(LOG), "--coldstart-replay-speed", speed,
            "--coldstart-model", "llama-3-70b", "--coldstart-optimization", "baseline",
            "--coldstart-results", str(tmp_path / "results"), "--coldstart-workdir", str(tmp_path / "work"), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)


def _offline() -> dict:
    out = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "ray-timeline", "--json", str(LOG)],
                         capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    return json.loads(out.stdout)


def test_a_recorded_70b_start_replays_through_the_benchmarks(tmp_path):
    out = _session(tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    runs = list((tmp_path / "results" / "runs").glob("*.json"))
    assert len(runs) == 1
    result = json.loads(runs[0].read_text())
    assert result["exit_status"] == "ok" and result["launcher"] == "replay" and result["model"] == "llama-3-70b"
    replay = result["replay"]
    assert replay["rules"] == "ray" and replay["speed"] == 25.0 and Path(replay["log"]) == LOG
    res = replay["resolution_s"]
    assert res["ready_s"] == 2.5 and res["line_lag_s"] < 2.5

    # The live phase table matches the offline reading of the same log.
    offline = {p["name"]: p for p in _offline()["phases"]}
    live = {p["name"]: p for p in result["phases"]}
    assert list(live) == list(offline)
    for name, phase in offline.items():
        if phase["duration_s"] is None:
            assert name == "first_token" or live[name]["duration_s"] is None, name
            continue
        assert abs(live[name]["start_s"] - phase["start_s"]) <= res["line_lag_s"] + 1e-6, name
        assert abs(live[name]["end_s"] - phase["end_s"]) <= res["line_lag_s"] + 1e-6, name
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
