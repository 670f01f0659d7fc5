"""The PR gate's decision rule: base vs head samples -> a verdict per case and metric.

Pure: no I/O, no pytest. For each (model, optimization, launcher) and each
phase (plus unaccounted, total and TTFT) the verdict is one of

* ``regressed`` / ``improved``: the head median moved beyond BOTH a relative
  threshold and an absolute floor in seconds, and, when both sides have at
  least ``min_samples`` starts, a one-sided Mann-Whitney U test agrees at
  ``alpha``. With fewer starts the thresholds alone decide: the test cannot
  decide anything there (3 vs 3 samples give p >= 1/20 = 0.05 at best).
* ``unchanged``: within the thresholds, or beyond them but not significant.
* ``missing``: observed in the base but not in the head, or head starts failed.
  Counts as a regression: a phase that vanished is not a speed-up.
* ``not comparable``: no baseline for it, or the asv series versions differ.

Budgets ride along: a head median over its budget is reported in the same
row; it fails the gate only when the base was within budget (a PR is not
blamed for a breach it inherited).

Exit codes: 0 ok, 1 regression, 2 unusable input (``Comparison.exit_code``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_coldstart.history.samples import COMPARED_METRICS, MACHINE_KEYS, METRICS, CaseSamples, SampleSet
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.case import CaseKey
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml

REGRESSED, IMPROVED, UNCHANGED, NOT_COMPARABLE, MISSING = (
    "regressed", "improved", "unchanged", "not comparable", "missing")
VERDICTS = (REGRESSED, MISSING, IMPROVED, NOT_COMPARABLE, UNCHANGED)
TEST_MWU, TEST_RATIO = "mann-whitney", "ratio"
FAILED_ROW = "failed_starts"
CASE_ROW = "(case)"


@dataclass(frozen=True)
class Threshold:
    """A change counts only if it exceeds both: ``rel`` (0.10 = 10 %) and ``floor_s`` seconds.

    ``ratio_rel`` replaces ``rel`` when the ratio rule decides alone (too few
    starts for the test): it must also absorb the run-to-run noise the test
    would otherwise account for. ``None`` means ``rel``.
    """

    rel: float
    floor_s: float
    ratio_rel: float | None = None

    @property
    def ratio_rel_or_rel(self) -> float:
        return self.rel if self.ratio_rel is None else self.ratio_rel


@dataclass(frozen=True)
class CompareConfig:
    """Thresholds per metric and the statistical test's settings.

    The defaults come from the CPU-lane noise study (README, "How regressions
    are decided"); ``benchmarks/compare.toml`` overrides them per metric.
    """

    default: Threshold = Threshold(0.10, 1.0)
    metrics: Mapping[str, Threshold] = field(default_factory=dict)
    alpha: float = 0.05
    min_samples: int = 4
    source: str = "built-in defaults"

    def threshold(self, metric: str) -> Threshold:
        return self.metrics.get(metric, self.default)


def _number(where: str, key: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{where}: {key} = {value!r}; expected a number in [{low}, {high}]")
    return float(value)


def _threshold(where: str, raw: object, base: Threshold) -> Threshold:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table with rel_threshold and/or abs_floor_s")
    unknown = set(raw) - {"rel_threshold", "abs_floor_s", "ratio_rel_threshold"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: rel_threshold, abs_floor_s, "
                          "ratio_rel_threshold")
    ratio = raw.get("ratio_rel_threshold", base.ratio_rel)
    return Threshold(_number(where, "rel_threshold", raw.get("rel_threshold", base.rel), 0, 10),
                     _number(where, "abs_floor_s", raw.get("abs_floor_s", base.floor_s), 0, 1e6),
                     None if ratio is None else _number(where, "ratio_rel_threshold", ratio, 0, 10))


def load_config(path: Path | None) -> CompareConfig:
    """Read a compare TOML (missing path = built-in defaults)::

        alpha = 0.05
        min_samples = 4
        [default]
        rel_threshold = 0.10        # with the test
        ratio_rel_threshold = 0.25  # without it (fewer starts)
        abs_floor_s = 1.0
        [metrics.ttft_s]
        abs_floor_s = 0.05
    """
    if path is None or not path.exists():
        return CompareConfig()
    raw = load_toml(path, "compare config")
    unknown = set(raw) - {"alpha", "min_samples", "default", "metrics"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: alpha, min_samples, default, metrics")
    built = CompareConfig()
    default = _threshold(f"{path} [default]", raw.get("default", {}), built.default)
    metrics = {}
    for name, table in raw.get("metrics", {}).items():
        if name not in METRICS:
            raise ConfigError(f"{path}: unknown metric [metrics.{name}]; known: {', '.join(METRICS)}")
        metrics[name] = _threshold(f"{path} [metrics.{name}]", table, default)
    min_samples = raw.get("min_samples", built.min_samples)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 2:
        raise ConfigError(f"{path}: min_samples = {min_samples!r}; expected an integer >= 2")
    alpha = _number(str(path), "alpha", raw.get("alpha", built.alpha), 1e-9, 0.5)
    if min_p_value(min_samples, min_samples) >= alpha:
        raise ConfigError(f"{path}: with min_samples = {min_samples} per side the smallest Mann-Whitney p-value is "
                          f"{min_p_value(min_samples, min_samples):.3g}, never below alpha = {alpha:g}; raise "
                          "min_samples or alpha")
    return CompareConfig(default, metrics, alpha, min_samples, str(path))


def min_p_value(n_base: int, n_head: int) -> float:
    """The smallest one-sided Mann-Whitney p-value *n_base* vs *n_head* samples can give.

    1 / C(n_base + n_head, n_base): 3 vs 3 -> 0.05, 4 vs 4 -> 0.014, 5 vs 5 -> 0.004
    (asv's ``_stats.is_different`` makes the same check before testing).
    """
    return 1.0 / math.comb(n_base + n_head, n_base)


@dataclass(frozen=True)
class Decision:
    verdict: str
    test: str
    p_value: float | None
    reason: str


def _p(head: Sequence[float], base: Sequence[float], alternative: str) -> float:
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        raise ConfigError("the Mann-Whitney U test needs scipy: pip install 'pytest-coldstart[asv]'") from None

    p = float(mannwhitneyu(head, base, alternative=alternative).pvalue)
    return 1.0 if math.isnan(p) else p


def decide(base: Sequence[float], head: Sequence[float], threshold: Threshold, *, alpha: float,
           min_samples: int) -> Decision:
    """The verdict for one metric with samples on both sides."""
    mb, mh = statistics.median(base), statistics.median(head)
    delta = mh - mb
    use_test = len(base) >= min_samples and len(head) >= min_samples and min_p_value(len(base), len(head)) < alpha
    rel = threshold.rel if use_test else threshold.ratio_rel_or_rel
    slower = delta > threshold.floor_s and mh > mb * (1 + rel)
    faster = -delta > threshold.floor_s and mh * (1 + rel) < mb
    pct = f"{delta:+.2f} s ({(mh / mb - 1) * 100:+.0f} %)" if mb > 0 else f"{delta:+.2f} s"
    limits = f"+{rel * 100:.0f} % and {threshold.floor_s:g} s"
    if use_test:
        p = _p(head, base, "greater" if delta >= 0 else "less")
        if slower and p < alpha:
            return Decision(REGRESSED, TEST_MWU, p, f"{pct}, beyond {limits}, p={p:.3g} < {alpha:g}")
        if faster and p < alpha:
            return Decision(IMPROVED, TEST_MWU, p, f"{pct}, beyond {limits}, p={p:.3g} < {alpha:g}")
        if slower or faster:
            return Decision(UNCHANGED, TEST_MWU, p, f"~ {pct} but not significant (p={p:.3g} >= {alpha:g})")
        return Decision(UNCHANGED, TEST_MWU, p, f"{pct}, within {limits}")
    few = (f"n={len(base)}/{len(head)}: p < {alpha:g} unreachable, thresholds only"
           if min(len(base), len(head)) >= min_samples else f"n={len(base)}/{len(head)} < {min_samples}: thresholds only")
    if slower:
        return Decision(REGRESSED, TEST_RATIO, None, f"{pct}, beyond {limits} ({few})")
    if faster:
        return Decision(IMPROVED, TEST_RATIO, None, f"{pct}, beyond {limits} ({few})")
    return Decision(UNCHANGED, TEST_RATIO, None, f"{pct}, within {limits} ({few})")


@dataclass(frozen=True)
class Row:
    """One line of the verdict table."""

    case: CaseKey
    metric: str
    base_s: tuple[float, ...]
    head_s: tuple[float, ...]
    verdict: str
    reason: str
    test: str | None = None
    p_value: float | None = None
    budget_s: float | None = None
    over_budget: bool = False
    base_over_budget: bool = False

    @property
    def base_median_s(self) -> float | None:
        return statistics.median(self.base_s) if self.base_s else None

    @property
    def head_median_s(self) -> float | None:
        return statistics.median(self.head_s) if self.head_s else None

    @property
    def ratio(self) -> float | None:
        b, h = self.base_median_s, self.head_median_s
        return None if b is None or h is None or b <= 0 else h / b

    @property
    def newly_over_budget(self) -> bool:
        return self.over_budget and not self.base_over_budget

    @property
    def failing(self) -> bool:
        return self.verdict in (REGRESSED, MISSING) or self.newly_over_budget


@dataclass(frozen=True)
class Comparison:
    """Every row, plus problems that make the input unusable (exit 2)."""

    base: str
    head: str
    rows: tuple[Row, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    config: CompareConfig = CompareConfig()
    software: tuple[Mapping[str, object], Mapping[str, object]] = ({}, {})

    @property
    def failing_rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.failing)

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 2
        return 1 if self.failing_rows else 0

    @property
    def status(self) -> str:
        return {0: "ok", 1: "regression", 2: "unusable input"}[self.exit_code]


def _budget(budgets: Budgets | None, case: CaseKey, metric: str) -> float | None:
    # With the launcher: a ray-serve TTFT is a whole scale-from-zero start, judged by its `@ray-serve` override.
    return budgets.for_case(case.model, case.optimization, case.launcher).get(metric) if budgets else None


def _case_rows(base: CaseSamples, head: CaseSamples, config: CompareConfig, budgets: Budgets | None,
               problems: list[str]) -> list[Row]:
    key = head.key
    rows: list[Row] = []
    if head.failed:
        errors = "; ".join(sorted(set(head.errors)))[:300]
        rows.append(Row(key, FAILED_ROW, (float(base.failed),), (float(head.failed),), MISSING,
                        f"{head.failed} of {head.runs} HEAD start(s) failed: {errors}"))
    ok_head = head.runs - head.failed
    for metric in COMPARED_METRICS:
        b, h = base.values(metric), head.values(metric)
        if not b and not h:
            continue
        limit = _budget(budgets, key, metric)
        budget = {"budget_s": limit,
                  "over_budget": bool(h) and limit is not None and statistics.median(h) > limit,
                  "base_over_budget": bool(b) and limit is not None and statistics.median(b) > limit}
        vb, vh = base.versions.get(metric), head.versions.get(metric)
        if vb is not None and vh is not None and vb != vh:
            problems.append(f"{key.label} {metric}: asv series version differs (base {vb}, head {vh}); the metric's "
                            "definition changed, so re-record the base with the same pytest-coldstart version")
            rows.append(Row(key, metric, b, h, NOT_COMPARABLE, f"series version {vb} vs {vh}", **budget))
        elif b and not h:
            why = (f"every HEAD start failed ({head.failed} of {head.runs})" if ok_head == 0 else
                   f"observed in {len(b)} base start(s), in none of {ok_head} HEAD start(s)")
            rows.append(Row(key, metric, b, h, MISSING, why, **budget))
        elif h and not b:
            rows.append(Row(key, metric, b, h, NOT_COMPARABLE, "not observed in the base: no baseline", **budget))
        else:
            d = decide(b, h, config.threshold(metric), alpha=config.alpha, min_samples=config.min_samples)
            rows.append(Row(key, metric, b, h, d.verdict, d.reason, d.test, d.p_value, **budget))
    return rows


def _same_machine(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    def norm(v: object) -> str:
        return "" if v in (None, 0, "0", "None") else str(v)

    return all(norm(a.get(k)) == norm(b.get(k)) for k in MACHINE_KEYS if k in a and k in b)


def compare(base: SampleSet, head: SampleSet, config: CompareConfig | None = None, budgets: Budgets | None = None,
            *, allow_machine_mismatch: bool = False, only_common: bool = False) -> Comparison:
    """Compare every case of *base* with *head*."""
    config = config or CompareConfig()
    problems: list[str] = []
    notes: list[str] = []
    rows: list[Row] = []
    if not _same_machine(base.machine, head.machine):
        what = (f"base ran on {dict(base.machine)}, head on {dict(head.machine)}")
        if allow_machine_mismatch:
            notes.append(f"different machines ({what}); compared anyway (--allow-machine-mismatch)")
        else:
            problems.append(f"results from different machines: {what}. Run base and head on the same "
                            "machine (the PR workflow runs both, interleaved, on one runner)")
    if not base.cases:
        problems.append(f"{base.label}: no cold starts in the base")
    if not head.cases:
        problems.append(f"{head.label}: no cold starts in the head")
    for key in sorted(set(base.cases) | set(head.cases)):
        b, h = base.cases.get(key), head.cases.get(key)
        if h is None:
            msg = f"{key.label}: in the base but never run in the head (partial results)"
            if only_common:
                notes.append(msg + "; skipped (--only-common)")
            else:
                problems.append(msg + "; run the same --model/--optimization/--launcher selection on both sides, "
                                "or pass --only-common")
            continue
        if b is None:
            rows.append(Row(key, CASE_ROW, (), (), NOT_COMPARABLE, "no base runs for this case"))
            continue
        if b.runs == b.failed:
            rows.append(Row(key, CASE_ROW, (), (), NOT_COMPARABLE, f"every base start failed ({b.failed})"))
            notes.append(f"{key.label}: every base start failed, nothing to compare against")
            if h.failed:
                rows.append(Row(key, FAILED_ROW, (float(b.failed),), (float(h.failed),), MISSING,
                                f"{h.failed} of {h.runs} HEAD start(s) failed too"))
            continue
        rows.extend(_case_rows(b, h, config, budgets, problems))
    if not problems and not any(r.verdict != NOT_COMPARABLE for r in rows):
        problems.append("nothing to compare: no case and metric has samples on both sides")
    return Comparison(base.label, head.label, tuple(rows), tuple(problems), tuple(notes), config,
                      (dict(base.software), dict(head.software)))


def unusable(base: str, head: str, problem: str) -> Comparison:
    """A comparison that could not start (unreadable input): exit 2 with the reason."""
    return Comparison(base, head, problems=(problem,))
