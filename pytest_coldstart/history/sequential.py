"""The sequential PR gate: judge interleaved (base, head) pairs after each pair, stop as soon as it can answer.

A fixed number of pairs is either too few on a noisy machine (a real +10 % passes as "unchanged") or too
many on a quiet one. Here the gate looks after every pair from ``min_pairs`` on and stops at

* ``regressed``: the head is slower beyond doubt at this look's share of alpha;
* ``unchanged``: the evidence rules out the change that matters (+10 % for time to ready) at this look's
  share of beta = 1 - power, i.e. a real +10 % would have been let through at most beta of the time;
* ``undecided``: neither by ``max_pairs`` (or the time budget): the answer says what was detectable and
  how many more pairs the boundaries would need at the measured spread.

Repeated looks must not inflate false alarms. The error rates are spent over the looks (alpha spending,
Lan & DeMets): look k may use ``alpha * (f(k) - f(k-1))`` with ``f`` rising from 0 to 1 over the looks, so
by the union bound the chance of any false alarm over the whole sequence is at most ``alpha`` (and of
passing a real +10 % at most ``beta``), however many looks are taken. Between cases the alpha is split
evenly (Bonferroni). The statistic is Yuen's trimmed mean of the pairs' log ratios (``stats.trimmed``): one
wild pair (a start 17 % off its partner, seen in the noise study) is trimmed instead of swamping the test.

The phases (where the time went) are judged at every look too, by the paired rule of ``verdict.compare`` at
their part of that look's alpha (the headline takes ``verdict.HEADLINE_ALPHA_SHARE``, the phases split the
rest), so a phase that moved beyond doubt stops the gate at ``regressed`` and the union bound still covers
every metric and look. A failed or missing head start stops at ``regressed`` at once, an aborted one stops
the gate undecided (exit 2). The simulation on measured noise
(``history.gate_study``) gives the error rates this design reaches: docs/explanation/regressions.md.

Two entry points: ``judge_pairs`` (pure: recorded pairs -> the decision, replaying every look, which is how
the PR workflow's hosted job re-judges the runner's pairs) and ``run_sequential`` (drives the starts through
a callback; ``coldstart gate run`` and ``coldstart bisect`` use it).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pytest_coldstart.history.samples import (
    METRICS,
    CaseSamples,
    SampleSet,
    cases_from_runs,
    machine_identity,
    run_metrics,
)
from pytest_coldstart.history.stats import TARGET_POWER, Trimmed, grow, log_ratios, trimmed
from pytest_coldstart.history.stats import t_quantile as _t
from pytest_coldstart.history.thresholds import CompareConfig
from pytest_coldstart.history.verdict import (
    HEADLINE_ALPHA_SHARE,
    HEADLINE_METRIC,
    REGRESSED,
    UNCHANGED,
    UNDECIDED,
    Comparison,
    Row,
    compare,
)
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.case import CaseKey, group_by_case
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.result import RunResult

#: Still sampling: no boundary crossed and the cap not reached.
CONTINUE = "continue"
TEST_SEQUENTIAL = "sequential trimmed-t"
#: Why the gate stopped.
STOP_REGRESSED, STOP_UNCHANGED, STOP_CAP, STOP_BUDGET, STOP_PROBLEM = (
    "regressed", "unchanged with enough power", "pair cap reached", "time budget spent", "could not judge")


@dataclass(frozen=True)
class SequentialDesign:
    """How many pairs, and the error rates spent over the looks.

    :param alpha: false-alarm rate over the whole sequence (per PR, split over the cases), by the union bound.
    :param power: 1 - beta: how surely the change that matters is *not* called unchanged.
    :param rho: shape of the spending function ``f(t) = t ** rho`` over the looks (t = share of looks
        taken): 1 spends evenly, higher keeps more for the last looks (fewer early stops, more power at the cap).
    """

    min_pairs: int = 3
    max_pairs: int = 20
    alpha: float = 0.05
    power: float = TARGET_POWER
    rho: float = 2.0

    def __post_init__(self) -> None:
        if not 2 <= self.min_pairs <= self.max_pairs <= 100:
            raise ConfigError(f"pairs: need 2 <= min_pairs ({self.min_pairs}) <= max_pairs ({self.max_pairs}) "
                              "<= 100")
        for name, value, low, high in (("alpha", self.alpha, 1e-6, 0.5), ("power", self.power, 0.5, 0.999),
                                       ("rho", self.rho, 0.1, 10)):
            if not (math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"sequential design: {name} = {value!r}; expected a number in [{low}, {high}]")

    @property
    def looks(self) -> int:
        return self.max_pairs - self.min_pairs + 1

    def _f(self, n: int) -> float:
        k = min(max(n - self.min_pairs + 1, 0), self.looks)
        return (k / self.looks) ** self.rho

    def share(self, n: int) -> float:
        """The share of the error rates the look at *n* pairs spends (0 before ``min_pairs``)."""
        return self._f(n) - self._f(n - 1)

    def spend(self, n: int, cases: int = 1) -> tuple[float, float]:
        """(alpha, beta) the look at *n* pairs may use, per case, for the headline metric."""
        share = self.share(n)
        alpha = self.alpha * HEADLINE_ALPHA_SHARE / max(cases, 1)
        return alpha * share, (1 - self.power) * share

    def look_alpha(self, n: int, cases: int = 1) -> float:
        """The alpha of the whole comparison at the look at *n* pairs, per case: ``verdict.compare`` splits it
        between the headline (80 %) and the phases (the rest), so each phase spends its share over the looks
        too. Before ``min_pairs`` (nothing is judged) the first look's, for the table only."""
        return self.alpha * self.share(max(n, self.min_pairs)) / max(cases, 1)


@dataclass(frozen=True)
class Look:
    """One case at one look: what the headline statistic said."""

    case: CaseKey
    pairs: int
    ratio: float
    p_slower: float
    p_not_target: float
    alpha: float
    beta: float
    detectable: float
    state: str


@dataclass(frozen=True)
class GateDecision:
    """Where the sequence stands after the pairs judged so far.

    ``state``: regressed / unchanged / undecided (stopped), or ``continue`` (take another pair).
    ``comparison``: the full table at this look (rows, phases, budgets); its exit code is the gate's.
    """

    state: str
    stop: str | None
    pairs: int
    comparison: Comparison
    looks: tuple[Look, ...] = ()
    more_pairs: int | None = None

    @property
    def stopped(self) -> bool:
        return self.state != CONTINUE

    @property
    def exit_code(self) -> int:
        return self.comparison.exit_code


#: One start's metric seconds (``samples.run_metrics``), or None when the start did not succeed.
Metrics = Mapping[str, float] | None
Pair = tuple[Metrics, Metrics]


def pair_runs(base: Sequence[RunResult], head: Sequence[RunResult]) -> dict[CaseKey, list[tuple[RunResult, RunResult]]]:
    """Per case, base start i with head start i in start order (the gate runs them interleaved)."""
    b, h = group_by_case(base), group_by_case(head)
    pairs = {}
    for key in sorted(set(b) & set(h)):
        bs = sorted(b[key], key=lambda r: r.started_at)
        hs = sorted(h[key], key=lambda r: r.started_at)
        pairs[key] = list(zip(bs, hs, strict=False))
    return pairs


def _side(runs: Sequence[RunResult], label: str) -> SampleSet:
    env = runs[-1].environment if runs else {}
    return SampleSet(label, cases_from_runs(runs), machine_identity(env),
                     {k: env.get(k) for k in ("vllm", "torch", "ray", "gpu_driver", "cuda_version", "git_commit")})


def metric_side(label: str, cases: Mapping[CaseKey, Sequence[Mapping[str, float]]]) -> SampleSet:
    """A sample set of successful starts given as metric seconds (the simulation's resampled pairs)."""
    built = {}
    for key, runs in cases.items():
        samples: dict[str, tuple[float, ...]] = {}
        for run in runs:
            for metric, value in run.items():
                samples[metric] = samples.get(metric, ()) + (value,)
        built[key] = CaseSamples(key, samples, len(runs))
    return SampleSet(label, built, {})


def _ok_totals(pairs: Sequence[Pair], n: int) -> list[tuple[float, float]]:
    return [(b[HEADLINE_METRIC], h[HEADLINE_METRIC]) for b, h in pairs[:n] if b is not None and h is not None
            and b.get(HEADLINE_METRIC, 0) > 0 and h.get(HEADLINE_METRIC, 0) > 0]


def _look(key: CaseKey, pairs: Sequence[Pair], n: int, design: SequentialDesign,
          config: CompareConfig, cases: int) -> tuple[Look, Trimmed, float, float]:
    ok = _ok_totals(pairs, n)
    logs = log_ratios([b for b, _ in ok], [h for _, h in ok])
    stat = trimmed(logs)
    alpha, beta = design.spend(n, cases)
    base_median = statistics.median(b for b, _ in ok) if ok else 0.0
    threshold = config.threshold(HEADLINE_METRIC)
    matters = threshold.change_that_matters(base_median)
    delta = statistics.median(h - b for b, h in ok) if ok else 0.0
    p_slower = stat.p_above(0.0) if len(logs) >= 2 else 1.0
    p_not_target = stat.p_below(math.log1p(matters)) if len(logs) >= 2 else 1.0
    ratio = math.exp(stat.mean) if logs else math.nan
    if alpha > 0 and p_slower <= alpha and ratio > 1 + config.paired_rel and delta > threshold.floor_s:
        state = REGRESSED
    elif beta > 0 and p_not_target <= beta:
        state = UNCHANGED
    else:
        state = CONTINUE
    # What this look rules out: the largest change still consistent with the pairs at its beta (the
    # sequential form of "detectable change": unchanged <=> it is at or under the change that matters).
    detectable = (grow(stat.mean + _t(1 - beta, stat.df) * stat.se)
                  if beta > 0 and stat.df >= 1 and math.isfinite(stat.se) else math.inf)
    return Look(key, n, ratio, p_slower, p_not_target, alpha, beta, detectable, state), stat, matters, delta


def _more_pairs(stat: Trimmed, n: int, design: SequentialDesign, matters: float, cases: int) -> int | None:
    """The first later look where, at this spread, a change of *matters* (or none) would cross a boundary."""
    if stat.df < 1 or not math.isfinite(stat.se):
        return None
    spread = stat.spread
    for m in range(n + 1, 101):
        alpha, beta = design.spend(min(m, design.max_pairs), cases)
        if alpha <= 0 or beta <= 0:
            continue
        df = max(m - 2 * math.floor(0.2 * m) - 1, 1)
        if (_t(1 - alpha, df) + _t(1 - beta, df)) * spread / math.sqrt(m) <= math.log1p(matters):
            return m - n
    return None


def _headline_row(look: Look, matters: float, delta: float, stop: bool, pairs: Sequence[Pair], more: int | None,
                  rel: float, floor_s: float) -> Row:
    ok = _ok_totals(pairs, look.pairs)
    what = (f"{look.pairs} pairs, trimmed mean ratio {look.ratio:.3f} ({(look.ratio - 1) * 100:+.1f} %), median Δ "
            f"{delta:+.2f} s; this look spends alpha {look.alpha:.2g} / beta {look.beta:.2g}")
    if look.state == REGRESSED:
        verdict, reason = REGRESSED, (f"{what}: slower beyond +{rel * 100:.0f} % and {floor_s:g} s, "
                                      f"p={look.p_slower:.3g} <= {look.alpha:.2g}")
    elif look.state == UNCHANGED:
        verdict, reason = UNCHANGED, (f"{what}: +{matters * 100:.0f} % ruled out (p={look.p_not_target:.3g} <= "
                                      f"{look.beta:.2g}); changes over {look.detectable * 100:+.1f} % ruled out")
    else:
        verdict = UNDECIDED
        settle = (f"{more} more pair(s) would settle it at this spread" if more else
                  "more than 100 pairs would be needed at this spread")
        reason = (f"{what}: neither slower beyond doubt (p={look.p_slower:.3g}) nor +{matters * 100:.0f} % ruled "
                  f"out (p={look.p_not_target:.3g}); only changes over {look.detectable * 100:+.1f} % ruled out; "
                  f"{settle}" + ("" if stop else " (still sampling)"))
    return Row(look.case, HEADLINE_METRIC, tuple(b for b, _ in ok), tuple(h for _, h in ok), verdict, reason,
               TEST_SEQUENTIAL, look.p_slower, detectable=look.detectable, more=None if verdict != UNDECIDED else more)


def judge_pairs(base: Sequence[RunResult], head: Sequence[RunResult], *, design: SequentialDesign | None = None,
                config: CompareConfig | None = None, budgets: Budgets | None = None, final: bool = False,
                labels: tuple[str, str] = ("base", "head")) -> GateDecision:
    """Replay every look on the recorded pairs (base start i with head start i, per case, in start order).

    Stops at the first look where every case is decided or one regressed; with ``final`` (no more pairs
    will come: the cap or the budget) an open sequence ends ``undecided``. Pure and deterministic: the
    runner and the hosted re-judge of the PR workflow reach the same answer from the same files.
    """
    runs = pair_runs(base, head)
    if not runs:
        c = (compare(_side(base, labels[0]), _side(head, labels[1]), config, budgets) if base and head else
             Comparison(*labels, problems=("no (base, head) pair of the same case yet",), config=config or
                        CompareConfig()))
        problem = bool(c.problems) or bool(base and head)
        return GateDecision(UNDECIDED if final or problem else CONTINUE, STOP_PROBLEM if problem else None, 0, c)
    paired = {key: [(run_metrics(b) if b.ok else None, run_metrics(h) if h.ok else None) for b, h in pairs]
              for key, pairs in runs.items()}

    def sides(n: int) -> tuple[SampleSet, SampleSet]:
        return (_side([b for p in runs.values() for b, _ in p[:n]], labels[0]),
                _side([h for p in runs.values() for _, h in p[:n]], labels[1]))

    return judge_metric_pairs(paired, sides, design=design, config=config, budgets=budgets, final=final)


def judge_metric_pairs(paired: Mapping[CaseKey, Sequence[Pair]], sides: Callable[[int], tuple[SampleSet, SampleSet]],
                       *, design: SequentialDesign | None = None, config: CompareConfig | None = None,
                       budgets: Budgets | None = None, final: bool = False) -> GateDecision:
    """``judge_pairs`` on pairs of metric seconds; *sides(n)* gives both sides' first n starts per case as
    sample sets (for the phases, budgets and failed starts: the fixed rule of ``verdict.compare``)."""
    design = design or SequentialDesign()
    config = replace(config or CompareConfig(), paired=True)
    available = min(len(p) for p in paired.values())
    cases = len(paired)
    looks: list[Look] = []
    n = min(available, design.min_pairs)
    while True:
        last = n >= available
        failures = any(b is None or h is None for p in paired.values() for b, h in p[:n])
        judging = n >= design.min_pairs
        comparison: Comparison | None = None
        if failures or judging:
            # Every metric spends its share of alpha over the looks (the headline 80 %, the phases the rest):
            # by the union bound over metrics and looks the false-alarm rate stays under alpha.
            comparison = compare(*sides(n), replace(config, alpha=design.look_alpha(n, cases)), budgets)
            if comparison.problems:
                return GateDecision(UNDECIDED, STOP_PROBLEM, n, comparison, tuple(looks))
            if any(r.metric not in METRICS for r in comparison.failing_rows):
                # A failed or missing head start: decided at once, whatever the statistics.
                return GateDecision(REGRESSED, STOP_REGRESSED, n, _note(comparison, f"stopped at pair {n}: a head "
                                    "start failed"), tuple(looks))
        states: dict[CaseKey, str] = {}
        judged: dict[CaseKey, tuple[Look, float, float, Trimmed]] = {}
        more_all: list[int] = []
        if judging:
            for key, pairs in paired.items():
                look, stat, matters, delta = _look(key, pairs, n, design, config, cases)
                looks.append(look)
                states[key] = look.state
                judged[key] = (look, matters, delta, stat)
        # A phase (or a new budget breach) beyond doubt at this look's alpha is a regression too.
        phase_failing = comparison is not None and judging and any(
            r.failing for r in comparison.rows if r.metric != HEADLINE_METRIC)
        decided = bool(states) and (phase_failing or REGRESSED in states.values() or
                                    all(s == UNCHANGED for s in states.values()))
        stopped = decided or n >= design.max_pairs or (last and final)
        if not (stopped or last):
            n += 1
            continue
        comparison = comparison or compare(*sides(n), replace(config, alpha=design.look_alpha(n, cases)), budgets)
        state = (REGRESSED if phase_failing or REGRESSED in states.values() else UNCHANGED if decided else
                 UNDECIDED if stopped else CONTINUE)
        threshold = config.threshold(HEADLINE_METRIC)
        new_rows = []
        for row in comparison.rows:
            if row.metric == HEADLINE_METRIC and row.case in judged:
                look, matters, delta, stat = judged[row.case]
                more = _more_pairs(stat, n, design, matters, cases) if look.state == CONTINUE else None
                if more is not None:
                    more_all.append(more)
                new_rows.append(replace(_headline_row(look, matters, delta, stopped, paired[row.case], more,
                                                      config.paired_rel, threshold.floor_s),
                                        budget_s=row.budget_s, over_budget=row.over_budget,
                                        base_over_budget=row.base_over_budget))
            else:
                new_rows.append(row)
        comparison = replace(comparison, rows=tuple(new_rows), config=replace(config, alpha=design.alpha))
        if stopped and comparison.failing_rows:
            state = REGRESSED
        stop = (None if not stopped else STOP_REGRESSED if state == REGRESSED else
                STOP_UNCHANGED if state == UNCHANGED else STOP_CAP if n >= design.max_pairs else STOP_BUDGET)
        note = (f"sequential gate: {stop} after {n} pair(s) (min {design.min_pairs}, max {design.max_pairs}; "
                f"alpha {design.alpha:g} spent over the looks, power {design.power:.0%})" if stopped else
                f"sequential gate: {n} pair(s) judged, still sampling")
        more_pairs = max(more_all) if more_all and state in (UNDECIDED, CONTINUE) else None
        return GateDecision(state, stop, n, _note(comparison, note), tuple(looks), more_pairs)


def _note(comparison: Comparison, note: str) -> Comparison:
    return replace(comparison, notes=(note, *comparison.notes))


@dataclass(frozen=True)
class SequentialOutcome:
    """What ``run_sequential`` did: the final decision, the pairs started and the seconds spent."""

    decision: GateDecision
    pairs_started: int
    elapsed_s: float
    pair_seconds: tuple[float, ...] = field(default_factory=tuple)


def run_sequential(start: Callable[[str, int], None],
                   collect: Callable[[], tuple[list[RunResult], list[RunResult]]], *,
                   design: SequentialDesign | None = None, config: CompareConfig | None = None,
                   budgets: Budgets | None = None, budget_s: float | None = None,
                   clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = print,
                   labels: tuple[str, str] = ("base", "head")) -> SequentialOutcome:
    """Run interleaved pairs until the gate can answer.

    :param start: ``start(side, i)`` runs one cold start of ``"base"`` or ``"head"`` for pair *i* (from 1)
        and writes its result where *collect* finds it; a failed start still writes its result.
    :param collect: the results so far, (base runs, head runs).
    :param budget_s: stop before a pair that would not finish within this many seconds of the first start
        (estimated from the slowest pair so far).
    """
    design = design or SequentialDesign()
    begun = clock()
    durations: list[float] = []
    decision: GateDecision | None = None
    for i in range(1, design.max_pairs + 1):
        if budget_s is not None and durations and clock() - begun + max(durations) > budget_s:
            base_runs, head_runs = collect()
            decision = judge_pairs(base_runs, head_runs, design=design, config=config, budgets=budgets, final=True,
                                   labels=labels)
            if not decision.stopped or decision.stop == STOP_CAP:
                decision = replace(decision, state=UNDECIDED, stop=STOP_BUDGET)
            log(f"pair {i}: not started, the next pair (~{max(durations) / 60:.0f} min) would pass the "
                f"{budget_s / 60:.0f}-minute budget")
            break
        t0 = clock()
        for side in ("base", "head"):
            start(side, i)
        durations.append(clock() - t0)
        base_runs, head_runs = collect()
        if len(base_runs) != len(head_runs):
            # A start that wrote no result (killed, crashed before its result): the pairs no longer line up.
            decision = judge_pairs(base_runs, head_runs, design=design, config=config, budgets=budgets, final=True,
                                   labels=labels)
            problem = (f"after pair {i} the base has {len(base_runs)} run file(s) and the head {len(head_runs)}: a "
                       "start wrote no result, so the pairs no longer line up; see the start logs and run again")
            decision = replace(decision, state=UNDECIDED, stop=STOP_PROBLEM,
                               comparison=replace(decision.comparison,
                                                  problems=(*decision.comparison.problems, problem)))
            log(f"pair {i}: {problem}")
            break
        decision = judge_pairs(base_runs, head_runs, design=design, config=config, budgets=budgets,
                               final=i >= design.max_pairs, labels=labels)
        log(_progress(i, decision, durations[-1]))
        if decision.stopped:
            break
    assert decision is not None
    return SequentialOutcome(decision, len(durations), clock() - begun, tuple(durations))


def _progress(i: int, decision: GateDecision, seconds: float) -> str:
    looks = [lk for lk in decision.looks if lk.pairs == decision.pairs]
    stats = "; ".join(f"{lk.case.label}: ratio {lk.ratio:.3f}, p(slower) {lk.p_slower:.3g} vs {lk.alpha:.2g}, "
                      f"p(+target) {lk.p_not_target:.3g} vs {lk.beta:.2g}" for lk in looks)
    state = decision.state if decision.stopped else "continue"
    return f"pair {i} ({seconds:.0f} s): {state.upper()}" + (f" ({decision.stop})" if decision.stop else "") + \
        (f" — {stats}" if stats else "")


def look_records(decision: GateDecision) -> list[Mapping[str, object]]:
    """The looks as plain values (for ``--json``)."""
    return [{"case": lk.case.label, "pairs": lk.pairs, "ratio": lk.ratio, "p_slower": lk.p_slower,
             "p_not_target": lk.p_not_target, "alpha": lk.alpha, "beta": lk.beta, "detectable": lk.detectable,
             "state": lk.state} for lk in decision.looks]
