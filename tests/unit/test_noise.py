"""The noise study's analysis (resampling with the compare rule) and its slowed registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_coldstart.history.compare import CompareConfig, Threshold
from pytest_coldstart.history.noise import costliest_metric, figures, pool, render_report, slowed_registry, study_report
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import RunResult, load_results

from ..conftest import DATA, REPO

pytest.importorskip("scipy")
RUNS = load_results(DATA / "compare")


def _slowed(result: RunResult, phase: str, extra_s: float) -> RunResult:
    data = result.to_dict()
    for p in data["phases"]:
        if p["name"] == phase:
            p["duration_s"] += extra_s
    data["total_ready_s"] += extra_s
    return RunResult.from_dict(data)


def test_slowed_registry_merges_the_probe_into_baseline(tmp_path: Path) -> None:
    out = slowed_registry(REPO / "benchmarks", tmp_path / "reg")
    original, slowed = load_registry(REPO / "benchmarks"), load_registry(out)
    probe = original.optimization("slowdown_probe")
    base = slowed.optimization("baseline")
    assert base.engine_args == original.optimization("baseline").engine_args + probe.engine_args
    assert dict(base.env) == {**dict(original.optimization("baseline").env), **dict(probe.env)}
    assert set(slowed.optimizations) == set(original.optimizations)
    for name in original.optimizations:
        if name != "baseline":
            assert slowed.optimization(name) == original.optimization(name)
    assert slowed.models == original.models


def test_slowed_registry_needs_the_probe(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "optimizations.toml").write_text('[optimizations.baseline]\ncache = "cold"\n')
    with pytest.raises(ConfigError, match="slowdown_probe"):
        slowed_registry(tmp_path / "src", tmp_path / "dst")


def test_resampling_counts_false_alarms_and_detections() -> None:
    a = pool(RUNS)
    b = pool([_slowed(r, "memory_profiling", 5.0) for r in RUNS])
    config = CompareConfig(Threshold(0.10, 1.0, 0.5), {}, 0.05, 4)
    assert costliest_metric(a, b) == "memory_profiling"
    one = figures(a, b, 1, config, target="memory_profiling")
    # 3 baseline runs: C(3, 2) pairs x 2 orders = 6 ordered 1-vs-1 A/A comparisons, all enumerated.
    assert one.aa_trials == 6
    assert one.ab_trials == 9 and one.named_rate == 1.0  # +5 s on a ~0.6 s phase: every pair catches it
    assert figures(a, b, 2, config, target="memory_profiling").aa_trials == 0  # 2+2 > 3 runs: no A/A at n=2
    # A/A alarms are real verdicts: with a 1 % ratio threshold and no floor, noise alone trips the gate.
    twitchy = CompareConfig(Threshold(0.01, 0.0, 0.01), {}, 0.05, 4)
    assert figures(a, a, 1, twitchy, target="memory_profiling").aa_alarms > 0


def test_study_report_renders(tmp_path: Path) -> None:
    slowed = [_slowed(r, "memory_profiling", 5.0) for r in RUNS]
    report = study_report(RUNS, slowed, CompareConfig(), [1, 2])
    assert report["slowdown"]["target_phase"] == "memory_profiling"
    assert report["slowdown"]["target_increase_s"] == pytest.approx(5.0)
    json.dumps(report)  # plain values only
    text = render_report(report)
    assert "| 1 |" in text and "`memory_profiling` named" in text
    with pytest.raises(ConfigError, match="need at least 2"):
        study_report(RUNS[:1], slowed, CompareConfig(), [1])


def test_the_real_study_backs_the_defaults() -> None:
    """tests/data/noise-study holds the 10 + 10 quiet cold starts the README's table comes from."""
    from pytest_coldstart.history.compare import load_config

    study = DATA / "noise-study"
    a, b = load_results(study / "baseline"), load_results(study / "slowed")
    assert len(pool(a)) == 10 and len(pool(b)) == 10
    assert all("786432" in r.server_argv for r in b) and not any("786432" in r.server_argv for r in a)
    config = load_config(REPO / "benchmarks" / "compare.toml")
    report = study_report(a, b, config, [1])
    assert report["slowdown"]["target_phase"] == "memory_profiling"
    assert 4.0 < report["slowdown"]["target_increase_s"] < 6.0
    one = report["by_n"][0]
    assert (one["aa_trials"], one["aa_alarms"]) == (90, 0)  # every ordered same-code pair passes
    assert (one["ab_trials"], one["named_rate"]) == (100, 1.0)  # every slowed pair fails, naming the phase
    conditions = [json.loads(line) for line in (study / "conditions.jsonl").read_text().splitlines()]
    assert len(conditions) == 20 and all(c["other_vllm"] == 0 for c in conditions)
