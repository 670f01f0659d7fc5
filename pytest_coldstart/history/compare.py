"""The PR gate's decision rule, as one import: thresholds, statistics and verdicts.

The rule lives in three modules, each with one job (asv keeps its statistics apart from its compare
command in the same way):

* ``history.thresholds``: what counts as a change (``Threshold``, ``CompareConfig``, ``load_config``);
* ``history.stats``: tests, spreads and what a sample size can detect;
* ``history.verdict``: rows, case verdicts (regressed / unchanged / undecided) and exit codes (``compare``).

This module re-exports their public names so callers keep one import path.
"""

from __future__ import annotations

from pytest_coldstart.history.stats import (
    TARGET_CHANGE,
    TARGET_POWER,
    detectable_change,
    log_ratios,
    min_p_value,
    recommended_pairs,
)
from pytest_coldstart.history.thresholds import CONFIG_KEYS, ON_UNDECIDED, CompareConfig, Threshold, load_config
from pytest_coldstart.history.verdict import (
    ANSWERS,
    CASE_ROW,
    FAILED_ROW,
    HEADLINE_ALPHA_SHARE,
    HEADLINE_METRIC,
    IMPROVED,
    MISSING,
    NOT_COMPARABLE,
    REGRESSED,
    TEST_MWU,
    TEST_PAIRED,
    TEST_RATIO,
    UNCHANGED,
    UNDECIDED,
    VERDICTS,
    Comparison,
    Decision,
    Row,
    case_verdict,
    compare,
    decide,
    decide_paired,
    paired_alpha,
    paired_note,
    paired_ok,
    unusable,
)

__all__ = [
    "ANSWERS", "CASE_ROW", "CONFIG_KEYS", "FAILED_ROW", "HEADLINE_ALPHA_SHARE", "HEADLINE_METRIC", "IMPROVED",
    "MISSING", "NOT_COMPARABLE", "ON_UNDECIDED", "REGRESSED", "TARGET_CHANGE", "TARGET_POWER", "TEST_MWU",
    "TEST_PAIRED", "TEST_RATIO", "UNCHANGED", "UNDECIDED", "VERDICTS", "CompareConfig", "Comparison", "Decision",
    "Row", "Threshold", "case_verdict", "compare", "decide", "decide_paired", "detectable_change", "load_config",
    "log_ratios", "min_p_value", "paired_alpha", "paired_note", "paired_ok", "recommended_pairs", "unusable",
]
