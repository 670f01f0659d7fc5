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

Failed starts are judged by kind (``ExitStatus``): a head whose *server*
fails (exited, timed out, unhealthy) while every base start succeeded is a
regression (exit 1, the row says so). A start the *harness* did not complete
(interrupted, harness error, preflight) says nothing about the code, and
server failures on both sides say nothing about the change: both make the
comparison impossible (exit 2), never "regression".
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
from typing import TypedDict

from pytest_coldstart.history.samples import COMPARED_METRICS, MACHINE_KEYS, METRICS, CaseSamples, SampleSet
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.case import CaseKey
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml, toml_tables
from pytest_coldstart.model.scaleout import SCALEOUT_METRICS

REGRESSED, IMPROVED, UNCHANGED, NOT_COMPARABLE, MISSING = (
    "regressed", "improved", "unchanged", "not comparable", "missing")
VERDICTS = (REGRESSED, MISSING, IMPROVED, NOT_COMPARABLE, UNCHANGED)
TEST_MWU, TEST_RATIO, TEST_PAIRED = "mann-whitney", "ratio", "paired-t"
#: The change the paired gate is sized to catch, and how surely (README, "Paired comparisons").
TARGET_CHANGE, TARGET_POWER = 0.10, 0.95
#: The paired rule's weighted Bonferroni split: the headline metric (time to ready: "did the cold start get
#: slower?") is tested at this share of alpha, the other metrics judged (the phases, TTFT: *where* it got
#: slower) split the rest, so the alarm rate per case stays <= alpha. An even split over ~13 metrics left
#: the total at alpha/13, where 6 interleaved A/A-quiet pairs caught +10 % in only a fifth of draws
#: (README, "Paired comparisons").
HEADLINE_METRIC, HEADLINE_ALPHA_SHARE = "total_ready_s", 0.8
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
    #: Use the interleaved pairing (base r_i with head r_i) when both sides have the same starts, all ok.
    paired: bool = False
    #: The relative threshold of the paired rule (its test carries the noise, so it can sit under 10 %).
    paired_rel: float = 0.05

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
    unknown = set(raw) - {"alpha", "min_samples", "default", "metrics", "paired", "paired_rel_threshold"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: alpha, min_samples, default, metrics, "
                          "paired, paired_rel_threshold")
    paired = raw.get("paired", False)
    if not isinstance(paired, bool):
        raise ConfigError(f"{path}: paired = {paired!r}; expected true or false")
    paired_rel = _number(str(path), "paired_rel_threshold", raw.get("paired_rel_threshold", 0.05), 0, 10)
    built = CompareConfig()
    default = _threshold(f"{path} [default]", raw.get("default", {}), built.default)
    metrics = {}
    for name, table in toml_tables(raw, "metrics", str(path)).items():
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
    return CompareConfig(default, metrics, alpha, min_samples, str(path), paired, paired_rel)


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


def log_ratios(base: Sequence[float], head: Sequence[float]) -> list[float]:
    return [math.log(h / b) for b, h in zip(base, head, strict=True) if b > 0 and h > 0]


def _t_quantile(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def detectable_change(sd_log: float, n: int, *, alpha: float, power: float = TARGET_POWER) -> float:
    """The smallest relative slowdown *n* pairs catch with probability *power* at one-sided *alpha*,
    given the spread *sd_log* of the paired log ratios (normal approximation of the paired t-test)."""
    if n < 2 or sd_log <= 0:
        return math.inf if n < 2 else 0.0
    from scipy.stats import norm

    return math.exp((_t_quantile(1 - alpha, n - 1) + float(norm.ppf(power))) * sd_log / math.sqrt(n)) - 1


def recommended_pairs(sd_log: float, *, alpha: float, change: float = TARGET_CHANGE, power: float = TARGET_POWER,
                      most: int = 50) -> int | None:
    """The fewest pairs that catch *change* with *power* at this spread (None: more than *most*)."""
    for n in range(2, most + 1):
        if detectable_change(sd_log, n, alpha=alpha, power=power) <= change:
            return n
    return None


def decide_paired(base: Sequence[float], head: Sequence[float], threshold: Threshold, *, alpha: float,
                  rel: float) -> Decision:
    """The verdict from interleaved pairs (base r_i ran next to head r_i): a one-sided paired t-test on the
    log ratios head_i / base_i, plus the relative threshold *rel* on their geometric mean and the absolute
    floor on the median difference. Drift the pair shares cancels out of each ratio."""
    logs = log_ratios(base, head)
    n = len(logs)
    mean = statistics.fmean(logs)
    ratio = math.exp(mean)
    delta = statistics.median(h - b for b, h in zip(base, head, strict=True))
    sd = statistics.stdev(logs) if n > 1 else 0.0
    if sd > 0:
        from scipy.stats import t

        p_slower = float(t.sf(mean / (sd / math.sqrt(n)), n - 1))
    else:
        p_slower = 0.0 if mean > 0 else 1.0
    p_faster = 1 - p_slower if sd > 0 else (0.0 if mean < 0 else 1.0)
    mdc = detectable_change(sd, n, alpha=alpha)
    what = (f"{n} pairs, geometric mean ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f} %), median Δ {delta:+.2f} s; "
            f"detectable ≥ {mdc * 100:.0f} %")
    limits = f"+{rel * 100:.0f} % and {threshold.floor_s:g} s"
    if ratio > 1 + rel and delta > threshold.floor_s and p_slower < alpha:
        return Decision(REGRESSED, TEST_PAIRED, p_slower, f"{what}, beyond {limits}, p={p_slower:.3g} < {alpha:g}")
    if ratio * (1 + rel) < 1 and -delta > threshold.floor_s and p_faster < alpha:
        return Decision(IMPROVED, TEST_PAIRED, p_faster, f"{what}, beyond {limits}, p={p_faster:.3g} < {alpha:g}")
    p = p_slower if mean >= 0 else p_faster
    return Decision(UNCHANGED, TEST_PAIRED, p, f"{what}, within {limits} or p={p:.3g} >= {alpha:g}")


def paired_alpha(alpha: float, metric: str, judged: int) -> float:
    """The share of *alpha* the paired rule tests *metric* at, with *judged* metrics in the case."""
    if judged <= 1:
        return alpha
    if metric == HEADLINE_METRIC:
        return alpha * HEADLINE_ALPHA_SHARE
    return alpha * (1 - HEADLINE_ALPHA_SHARE) / (judged - 1)


def paired_note(base: Sequence[float], head: Sequence[float], *, alpha: float, metric: str) -> str | None:
    """What the run count can detect for *metric*, and how many pairs the target needs."""
    logs = log_ratios(base, head)
    if len(logs) < 3:
        return None
    sd = statistics.stdev(logs)
    need = recommended_pairs(sd, alpha=alpha)
    return (f"paired {metric}: with {len(logs)} pairs the smallest slowdown caught {TARGET_POWER:.0%} of the time is "
            f"{detectable_change(sd, len(logs), alpha=alpha) * 100:.1f} % (spread of log ratios {sd:.3f}); "
            + (f"{need} pairs catch +{TARGET_CHANGE:.0%}" if need else f"+{TARGET_CHANGE:.0%} needs over 50 pairs"))


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


class _RowBudget(TypedDict):
    """A row's budget columns (``Row``'s last three fields), passed as ``**budget``."""

    budget_s: float | None
    over_budget: bool
    base_over_budget: bool


def _budget(budgets: Budgets | None, case: CaseKey, metric: str) -> float | None:
    # With the launcher: a ray-serve TTFT is a whole scale-from-zero start, judged by its `@ray-serve` override.
    return budgets.for_case(case.model, case.optimization, case.launcher).get(metric) if budgets else None


def _case_rows(base: CaseSamples, head: CaseSamples, config: CompareConfig, budgets: Budgets | None,
               problems: list[str]) -> list[Row]:
    key = head.key
    rows: list[Row] = []
    if head.failed:
        errors = "; ".join(sorted(set(head.errors)))[:300]
        if not base.failed:
            rows.append(Row(key, FAILED_ROW, (float(base.failed),), (float(head.failed),), MISSING,
                            f"HEAD server failed to start in {head.failed} of {head.runs} start(s) while every base "
                            f"start succeeded: {errors}"))
        elif head.failed / head.runs > base.failed / base.runs:
            rows.append(Row(key, FAILED_ROW, (float(base.failed),), (float(head.failed),), MISSING,
                            f"HEAD server failed to start in {head.failed} of {head.runs} start(s), more often than "
                            f"the base ({base.failed} of {base.runs}): {errors}"))
        else:
            rows.append(Row(key, FAILED_ROW, (float(base.failed),), (float(head.failed),), UNCHANGED,
                            f"the server failed as often on both sides (base {base.failed} of {base.runs}, HEAD "
                            f"{head.failed} of {head.runs}): flaky, not this change"))
    ok_head = head.ok_runs
    for metric in (*COMPARED_METRICS, *SCALEOUT_METRICS):
        b, h = base.values(metric), head.values(metric)
        if not b and not h:
            continue
        limit = _budget(budgets, key, metric)
        budget: _RowBudget = {"budget_s": limit,
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
            if paired_ok(base, head, config, b, h):
                # Weighted Bonferroni over the metrics judged: the alarm rate is per case, not per metric.
                judged = sum(1 for m in METRICS if base.values(m) and head.values(m))
                d = decide_paired(b, h, config.threshold(metric), alpha=paired_alpha(config.alpha, metric, judged),
                                  rel=config.paired_rel)
            else:
                d = decide(b, h, config.threshold(metric), alpha=config.alpha, min_samples=config.min_samples)
            rows.append(Row(key, metric, b, h, d.verdict, d.reason, d.test, d.p_value, **budget))
    return rows


def paired_ok(base: CaseSamples, head: CaseSamples, config: CompareConfig, b: Sequence[float],
              h: Sequence[float]) -> bool:
    """Whether the pairing holds: asked for, every start ok on both sides, the same count, at least 2."""
    return (config.paired and not base.failed and not head.failed and not base.aborted and not head.aborted
            and len(b) == len(h) == base.runs == head.runs and len(b) >= 2)


def _failure_problems(key: CaseKey, base: CaseSamples, head: CaseSamples) -> list[str]:
    """Why failed starts make *key* impossible to judge (exit 2), or nothing.

    Aborts and harness failures on either side: the runs are incomplete, not slow.
    Server failures on both sides: the base is broken too, so a failing head is
    not evidence that this change broke it.
    """
    problems = []
    for side, samples in (("base", base), ("HEAD", head)):
        if samples.aborted:
            why = "; ".join(sorted(set(samples.abort_errors)))[:300]
            problems.append(f"{key.label}: {samples.aborted} of {samples.runs} {side} start(s) did not complete "
                            f"for a reason outside the server ({why}); re-run them (an abort or a harness "
                            "failure is no verdict)")
    if base.failed and head.failed and (base.ok_runs == 0 or head.ok_runs == 0):
        problems.append(f"{key.label}: the server failed on both sides (base {base.failed} of {base.runs}, HEAD "
                        f"{head.failed} of {head.runs}); the base is broken too, so no verdict on this change. "
                        "Fix the base (or the machine) and re-run")
    return problems


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
        blocked = _failure_problems(key, b, h)
        if blocked:
            problems.extend(blocked)
            rows.append(Row(key, CASE_ROW, (), (), NOT_COMPARABLE, blocked[0]))
            continue
        if b.ok_runs == 0:
            rows.append(Row(key, CASE_ROW, (), (), NOT_COMPARABLE, f"every base start failed ({b.failed})"))
            notes.append(f"{key.label}: every base start failed and every HEAD start succeeded; nothing to "
                         "compare against")
            continue
        rows.extend(_case_rows(b, h, config, budgets, problems))
        tb, th = b.values("total_ready_s"), h.values("total_ready_s")
        if config.paired and paired_ok(b, h, config, tb, th):
            note = paired_note(tb, th, alpha=config.alpha * HEADLINE_ALPHA_SHARE, metric=f"{key.label} total_ready_s")
            if note:
                notes.append(note)
        elif config.paired:
            notes.append(f"{key.label}: not paired (the sides differ in starts, or some failed); decided unpaired")
    if not problems and not any(r.verdict != NOT_COMPARABLE for r in rows):
        problems.append("nothing to compare: no case and metric has samples on both sides")
    return Comparison(base.label, head.label, tuple(rows), tuple(problems), tuple(notes), config,
                      (dict(base.software), dict(head.software)))


def unusable(base: str, head: str, problem: str) -> Comparison:
    """A comparison that could not start (unreadable input): exit 2 with the reason."""
    return Comparison(base, head, problems=(problem,))
