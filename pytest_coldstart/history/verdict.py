"""The PR gate's verdicts: base vs head samples -> a verdict per case and metric.

Pure: no I/O, no pytest. For each (model, optimization, launcher) and each
phase (plus unaccounted, total and TTFT) the verdict is one of three answers
(docs/explanation/regressions.md), plus two about the input:

* ``regressed`` / ``improved``: the head median moved beyond BOTH a relative
  threshold and an absolute floor in seconds, and, when both sides have at
  least ``min_samples`` starts, a one-sided Mann-Whitney U test agrees at
  ``alpha`` (with ``--paired``: a paired t-test on the log ratios).
* ``unchanged``: not regressed, AND the evidence could have shown the change
  that matters: the change these samples catch with the configured power
  (their *detectable change*) is at or under the threshold. Never by default.
* ``undecided``: neither. The row says what the samples can detect and how
  many more starts (pairs) would settle it.
* ``missing``: observed in the base but not in the head, or head starts failed.
  Counts as a regression: a phase that vanished is not a speed-up.
* ``not comparable``: no baseline for it, or the asv series versions differ.

The case as a whole: ``regressed`` when any row fails; else the verdict of its
headline metric (time to ready: "did the cold start get slower?"), whose
detectable change decides between ``unchanged`` and ``undecided``. The phases
say *where* it moved; a phase too noisy to rule out its own threshold is
printed undecided but does not hold the case up.

Failed starts are judged by kind (``ExitStatus``): a head whose *server*
fails (exited, timed out, unhealthy) while every base start succeeded is a
regression (exit 1, the row says so). A start the *harness* did not complete
(interrupted, harness error, preflight) says nothing about the code, and
server failures on both sides say nothing about the change: both make the
comparison impossible (exit 2), never "regression".

Budgets ride along: a head median over its budget is reported in the same
row; it fails the gate only when the base was within budget (a PR is not
blamed for a breach it inherited).

Exit codes (``Comparison.exit_code``): 0 no regression, 1 regression, 2 could
not decide: unusable input, or a case undecided (unless compare.toml sets
``on_undecided = "pass"``; the words still say UNDECIDED).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_coldstart.history.samples import (
    COMPARED_METRICS,
    MACHINE_KEYS,
    METRICS,
    UNSETTLED_METRICS,
    CaseSamples,
    SampleSet,
)
from pytest_coldstart.history.stats import (
    TARGET_CHANGE,
    TARGET_POWER,
    detectable_change,
    detectable_change_unpaired,
    log_ratios,
    mann_whitney_p,
    min_p_value,
    paired_t_p,
    recommended_pairs,
    recommended_starts,
)
from pytest_coldstart.history.thresholds import CompareConfig, Threshold
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.case import CaseKey
from pytest_coldstart.model.scaleout import SCALEOUT_METRICS

REGRESSED, IMPROVED, UNCHANGED, UNDECIDED, NOT_COMPARABLE, MISSING = (
    "regressed", "improved", "unchanged", "undecided", "not comparable", "missing")
VERDICTS = (REGRESSED, MISSING, UNDECIDED, IMPROVED, NOT_COMPARABLE, UNCHANGED)
#: The three answers a case (and a judged metric) gets.
ANSWERS = (REGRESSED, UNCHANGED, UNDECIDED)
TEST_MWU, TEST_RATIO, TEST_PAIRED = "mann-whitney", "ratio", "paired-t"
#: The paired rule's weighted Bonferroni split: the headline metric (time to ready: "did the cold start get
#: slower?") is tested at this share of alpha, the other metrics judged (the phases, TTFT: *where* it got
#: slower) split the rest, so the alarm rate per case stays <= alpha. An even split over ~13 metrics left
#: the total at alpha/13, where 6 interleaved A/A-quiet pairs caught +10 % in only a fifth of draws
#: (docs/explanation/regressions.md, "Paired comparisons").
HEADLINE_METRIC, HEADLINE_ALPHA_SHARE = "total_ready_s", 0.8
FAILED_ROW = "failed_starts"
CASE_ROW = "(case)"


@dataclass(frozen=True)
class Decision:
    """One metric's verdict; ``detectable`` is the relative change the samples catch with the configured
    power (inf: unknown), ``more`` how many more pairs (paired) or starts per side (unpaired) would bring it
    to the change that matters (None: not needed, or more than 50)."""

    verdict: str
    test: str
    p_value: float | None
    reason: str
    detectable: float | None = None
    more: int | None = None


def _pct(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value * 100:.1f} %"


def _settle(verdict_if_powered: str, what: str, detectable: float, matters: float, need: int | None, have: int,
            unit: str) -> tuple[str, str, int | None]:
    """unchanged when the samples could have shown *matters*, else undecided with what would settle it."""
    if math.isinf(detectable):
        more = None if need is None else max(need - have, 1)
        return UNDECIDED, (f"{what}; UNDECIDED: no spread can be measured from {have} {unit}, so nothing is ruled "
                           f"out" + (f"; {more} more {unit} would let the test decide" if more else "")), more
    if detectable <= matters:
        return verdict_if_powered, f"{what}; could detect ≥ {_pct(detectable)} (the change that matters: " \
            f"{_pct(matters)})", None
    more = None if need is None else max(need - have, 1)
    return UNDECIDED, (f"{what}; UNDECIDED: only a change ≥ {_pct(detectable)} would have been caught, not "
                       f"{_pct(matters)}; " + (f"{more} more {unit} would settle it" if more else
                                               f"more than 50 {unit} would be needed at this spread")), more


def _pooled_log_sd(base: Sequence[float], head: Sequence[float]) -> float:
    logs_b = [math.log(v) for v in base if v > 0]
    logs_h = [math.log(v) for v in head if v > 0]
    df = len(logs_b) + len(logs_h) - 2
    if len(logs_b) < 2 or len(logs_h) < 2 or df <= 0:
        return math.inf
    ss = sum((x - statistics.fmean(logs_b)) ** 2 for x in logs_b) + \
        sum((x - statistics.fmean(logs_h)) ** 2 for x in logs_h)
    return math.sqrt(ss / df)


def decide(base: Sequence[float], head: Sequence[float], threshold: Threshold, *, alpha: float,
           min_samples: int, power: float = TARGET_POWER) -> Decision:
    """The verdict for one metric with independent samples on both sides."""
    mb, mh = statistics.median(base), statistics.median(head)
    delta = mh - mb
    use_test = len(base) >= min_samples and len(head) >= min_samples and min_p_value(len(base), len(head)) < alpha
    rel = threshold.rel if use_test else threshold.ratio_rel_or_rel
    slower = delta > threshold.floor_s and mh > mb * (1 + rel)
    faster = -delta > threshold.floor_s and mh * (1 + rel) < mb
    pct = f"{delta:+.2f} s ({(mh / mb - 1) * 100:+.0f} %)" if mb > 0 else f"{delta:+.2f} s"
    limits = f"+{rel * 100:.0f} % and {threshold.floor_s:g} s"
    sd = _pooled_log_sd(base, head)
    matters = threshold.change_that_matters(mb)
    detectable = (math.inf if math.isinf(sd) else
                  detectable_change_unpaired(sd, len(base), len(head), alpha=alpha if use_test else None,
                                             power=power, ratio_rel=rel))
    need = min_samples if math.isinf(sd) else recommended_starts(sd, alpha=alpha, change=matters, power=power)
    have = min(len(base), len(head))
    if use_test:
        p = mann_whitney_p(head, base, "greater" if delta >= 0 else "less")
        if slower and p < alpha:
            return Decision(REGRESSED, TEST_MWU, p, f"{pct}, beyond {limits}, p={p:.3g} < {alpha:g}", detectable)
        if faster and p < alpha:
            return Decision(IMPROVED, TEST_MWU, p, f"{pct}, beyond {limits}, p={p:.3g} < {alpha:g}", detectable)
        what = (f"~ {pct} but not significant (p={p:.3g} >= {alpha:g})" if slower or faster else
                f"{pct}, within {limits}")
        verdict, reason, more = _settle(UNCHANGED, what, detectable, matters, need, have, "starts per side")
        return Decision(verdict, TEST_MWU, p, reason, detectable, more)
    few = (f"n={len(base)}/{len(head)}: p < {alpha:g} unreachable, thresholds only"
           if min(len(base), len(head)) >= min_samples else f"n={len(base)}/{len(head)} < {min_samples}: thresholds only")
    if slower:
        return Decision(REGRESSED, TEST_RATIO, None, f"{pct}, beyond {limits} ({few})", detectable)
    if faster:
        return Decision(IMPROVED, TEST_RATIO, None, f"{pct}, beyond {limits} ({few})", detectable)
    need = None if need is None else max(need, min_samples)
    verdict, reason, more = _settle(UNCHANGED, f"{pct}, within {limits} ({few})", detectable, matters, need, have,
                                    "starts per side")
    return Decision(verdict, TEST_RATIO, None, reason, detectable, more)


def decide_paired(base: Sequence[float], head: Sequence[float], threshold: Threshold, *, alpha: float,
                  rel: float, power: float = TARGET_POWER) -> Decision:
    """The verdict from interleaved pairs (base r_i ran next to head r_i): a one-sided paired t-test on the
    log ratios head_i / base_i, plus the relative threshold *rel* on their geometric mean and the absolute
    floor on the median difference. Drift the pair shares cancels out of each ratio."""
    logs = log_ratios(base, head)
    n = len(logs)
    if n < 2:
        # Zero-second samples have no log ratio (a phase measured as 0.00 s): the medians decide instead.
        return decide(base, head, threshold, alpha=alpha, min_samples=len(base) + 1, power=power)
    mean = statistics.fmean(logs)
    ratio = math.exp(mean)
    delta = statistics.median(h - b for b, h in zip(base, head, strict=True))
    sd = statistics.stdev(logs) if n > 1 else 0.0
    p_slower, p_faster = paired_t_p(logs)
    mdc = detectable_change(sd, n, alpha=alpha, power=power)
    what = (f"{n} pairs, geometric mean ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f} %), median Δ {delta:+.2f} s; "
            f"detectable ≥ {_pct(mdc)}")
    limits = f"+{rel * 100:.0f} % and {threshold.floor_s:g} s"
    if ratio > 1 + rel and delta > threshold.floor_s and p_slower < alpha:
        return Decision(REGRESSED, TEST_PAIRED, p_slower, f"{what}, beyond {limits}, p={p_slower:.3g} < {alpha:g}",
                        mdc)
    if ratio * (1 + rel) < 1 and -delta > threshold.floor_s and p_faster < alpha:
        return Decision(IMPROVED, TEST_PAIRED, p_faster, f"{what}, beyond {limits}, p={p_faster:.3g} < {alpha:g}",
                        mdc)
    p = p_slower if mean >= 0 else p_faster
    matters = threshold.change_that_matters(statistics.median(base))
    need = recommended_pairs(sd, alpha=alpha, change=matters, power=power) if sd > 0 else None
    verdict, reason, more = _settle(UNCHANGED, f"{what}, within {limits} or p={p:.3g} >= {alpha:g}", mdc, matters,
                                    need, n, "pairs")
    return Decision(verdict, TEST_PAIRED, p, reason, mdc, more)


def paired_alpha(alpha: float, metric: str, judged: int) -> float:
    """The share of *alpha* the paired rule tests *metric* at, with *judged* metrics in the case."""
    if judged <= 1:
        return alpha
    if metric == HEADLINE_METRIC:
        return alpha * HEADLINE_ALPHA_SHARE
    return alpha * (1 - HEADLINE_ALPHA_SHARE) / (judged - 1)


def paired_note(base: Sequence[float], head: Sequence[float], *, alpha: float, metric: str,
                power: float = TARGET_POWER) -> str | None:
    """What the run count can detect for *metric*, and how many pairs the target needs."""
    logs = log_ratios(base, head)
    if len(logs) < 3:
        return None
    sd = statistics.stdev(logs)
    need = recommended_pairs(sd, alpha=alpha, power=power)
    return (f"paired {metric}: with {len(logs)} pairs the smallest slowdown caught {power:.0%} of the time is "
            f"{detectable_change(sd, len(logs), alpha=alpha, power=power) * 100:.1f} % (spread of log ratios "
            f"{sd:.3f}); " + (f"{need} pairs catch +{TARGET_CHANGE:.0%}" if need else
                              f"+{TARGET_CHANGE:.0%} needs over 50 pairs"))


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
    #: The relative change these samples catch with the configured power (None: not judged statistically).
    detectable: float | None = None
    #: How many more pairs (or starts per side) would settle an undecided row.
    more: int | None = None

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


def case_verdict(rows: Sequence[Row]) -> str:
    """One case's answer from its rows: regressed, unchanged, undecided (or not comparable: no rows judged)."""
    if any(r.failing for r in rows):
        return REGRESSED
    judged = [r for r in rows if r.metric != CASE_ROW and r.verdict != NOT_COMPARABLE]
    if not judged:
        return NOT_COMPARABLE
    headline = [r for r in judged if r.metric == HEADLINE_METRIC]
    deciding = headline or judged
    return UNDECIDED if any(r.verdict == UNDECIDED for r in deciding) else UNCHANGED


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
    def cases(self) -> dict[CaseKey, str]:
        """Each case's answer (``case_verdict``), in row order."""
        grouped: dict[CaseKey, list[Row]] = {}
        for row in self.rows:
            grouped.setdefault(row.case, []).append(row)
        return {key: case_verdict(rows) for key, rows in grouped.items()}

    @property
    def verdict(self) -> str:
        """The whole comparison's answer: regressed, unchanged or undecided (unusable input: undecided)."""
        if self.failing_rows:
            return REGRESSED
        if self.problems or any(v == UNDECIDED for v in self.cases.values()):
            return UNDECIDED
        return UNCHANGED

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 2
        if self.failing_rows:
            return 1
        if self.verdict == UNDECIDED and self.config.on_undecided != "pass":
            return 2
        return 0

    @property
    def status(self) -> str:
        if self.problems:
            return "unusable input"
        return {REGRESSED: "regression", UNDECIDED: "undecided", UNCHANGED: "ok"}[self.verdict]


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
        over = bool(h) and limit is not None and statistics.median(h) > limit
        base_over = bool(b) and limit is not None and statistics.median(b) > limit
        vb, vh = base.versions.get(metric), head.versions.get(metric)
        if vb is not None and vh is not None and vb != vh:
            problems.append(f"{key.label} {metric}: asv series version differs (base {vb}, head {vh}); the metric's "
                            "definition changed, so re-record the base with the same pytest-coldstart version")
            rows.append(Row(key, metric, b, h, NOT_COMPARABLE, f"series version {vb} vs {vh}",
                            budget_s=limit, over_budget=over, base_over_budget=base_over))
        elif b and not h and ok_head > 0 and metric in UNSETTLED_METRICS:
            rows.append(Row(key, metric, b, h, UNDECIDED,
                            f"observed in {len(b)} base start(s), in none of {ok_head} HEAD start(s): not lost, "
                            "unmeasured (the warm-up latencies never settled); more starts would settle it",
                            budget_s=limit, over_budget=over, base_over_budget=base_over))
        elif b and not h:
            why = (f"every HEAD start failed ({head.failed} of {head.runs})" if ok_head == 0 else
                   f"observed in {len(b)} base start(s), in none of {ok_head} HEAD start(s)")
            rows.append(Row(key, metric, b, h, MISSING, why,
                            budget_s=limit, over_budget=over, base_over_budget=base_over))
        elif h and not b:
            rows.append(Row(key, metric, b, h, NOT_COMPARABLE, "not observed in the base: no baseline",
                            budget_s=limit, over_budget=over, base_over_budget=base_over))
        else:
            if paired_ok(base, head, config, b, h):
                # Weighted Bonferroni over the metrics judged: the alarm rate is per case, not per metric.
                judged = sum(1 for m in METRICS if base.values(m) and head.values(m))
                d = decide_paired(b, h, config.threshold(metric), alpha=paired_alpha(config.alpha, metric, judged),
                                  rel=config.paired_rel, power=config.power)
            else:
                d = decide(b, h, config.threshold(metric), alpha=config.alpha, min_samples=config.min_samples,
                           power=config.power)
            rows.append(Row(key, metric, b, h, d.verdict, d.reason, d.test, d.p_value,
                            budget_s=limit, over_budget=over, base_over_budget=base_over,
                            detectable=d.detectable, more=d.more))
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
            note = paired_note(tb, th, alpha=config.alpha * HEADLINE_ALPHA_SHARE, metric=f"{key.label} total_ready_s",
                              power=config.power)
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
