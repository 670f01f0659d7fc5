"""Proof by simulation: the sequential gate's error rates on measured pair noise.

Real interleaved pairs (the A/A study, the noise study's baseline taken as adjacent pairs, any directory of
real pairs) are resampled into sequences of ``max_pairs`` pairs: each drawn pair is swapped at random (under
"same code" base and head are exchangeable, so the log ratio is as likely negative as positive; this also
removes the order effect a handful of pairs shows by chance) and its head is scaled by ``1 + change`` in
every metric (a known injected slowdown). Each sequence is judged exactly as ``coldstart gate run`` judges
(``sequential.judge_metric_pairs``), which stops at the first look that answers.

* change 0 (A/A): a ``regressed`` is a false alarm (want <= 1 %);
* change +10 %: a ``regressed`` is a detection (want >= 95 % within the cap), an ``unchanged`` a miss.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_coldstart.history.samples import run_metrics
from pytest_coldstart.history.sequential import (
    Pair,
    SequentialDesign,
    judge_metric_pairs,
    metric_side,
    pair_runs,
)
from pytest_coldstart.history.stats import log_ratios
from pytest_coldstart.history.thresholds import CompareConfig
from pytest_coldstart.history.verdict import HEADLINE_METRIC, REGRESSED, UNCHANGED, UNDECIDED
from pytest_coldstart.model.case import CaseKey
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.result import RunResult

KEY = CaseKey("study", "baseline", "vllm")
MetricPair = tuple[Mapping[str, float], Mapping[str, float]]


def interleaved(base: Sequence[RunResult], head: Sequence[RunResult]) -> list[MetricPair]:
    """Real pairs as they ran: base start i with head start i (one case), both successful."""
    pairs: list[MetricPair] = [(run_metrics(b), run_metrics(h)) for p in pair_runs(base, head).values()
                               for b, h in p if b.ok and h.ok]
    if len(pairs) < 2:
        raise ConfigError(f"need at least 2 successful (base, head) pairs; have {len(pairs)}")
    return pairs


def adjacent(runs: Sequence[RunResult]) -> list[MetricPair]:
    """Same-code starts in start order taken two by two: (r0, r1), (r2, r3), ... (the issue's observation)."""
    ok = [run_metrics(r) for r in sorted(runs, key=lambda r: r.started_at) if r.ok]
    if len(ok) < 4:
        raise ConfigError(f"need at least 4 successful starts; have {len(ok)}")
    return [(ok[i], ok[i + 1]) for i in range(0, len(ok) - 1, 2)]


def spread(pairs: Sequence[MetricPair]) -> float:
    """Standard deviation of the pairs' log ratios of time to ready."""
    logs = log_ratios([b[HEADLINE_METRIC] for b, _ in pairs], [h[HEADLINE_METRIC] for _, h in pairs])
    return statistics.stdev(logs) if len(logs) > 1 else math.nan


@dataclass(frozen=True)
class Outcomes:
    """How *sequences* sequences ended, and how many pairs each took."""

    change: float
    sequences: int
    regressed: int
    unchanged: int
    undecided: int
    pairs: tuple[int, ...]

    @property
    def mean_pairs(self) -> float:
        return statistics.fmean(self.pairs)

    @property
    def p95_pairs(self) -> int:
        ordered = sorted(self.pairs)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def record(self) -> dict[str, Any]:
        n = self.sequences
        return {"change": self.change, "sequences": n, "regressed": self.regressed, "unchanged": self.unchanged,
                "undecided": self.undecided, "regressed_rate": self.regressed / n,
                "unchanged_rate": self.unchanged / n, "undecided_rate": self.undecided / n,
                "mean_pairs": round(self.mean_pairs, 2), "p95_pairs": self.p95_pairs}


def bandwidths(pool: Sequence[MetricPair]) -> dict[str, float]:
    """Per metric, the smoothing of the bootstrap: a quarter of the spread of its log ratios.

    Drawing a handful of real pairs with replacement repeats the same pair (3 draws of one pair: zero
    spread, a "certain" verdict no real sequence gives); a little noise on each draw (a smoothed bootstrap)
    keeps the pool's spread, wild pairs included, without those exact repeats.
    """
    out = {}
    for metric in {m for b, h in pool for m in b if m in h}:
        logs = [math.log(h[metric] / b[metric]) for b, h in pool
                if b.get(metric, 0) > 0 and h.get(metric, 0) > 0]
        out[metric] = 0.25 * statistics.stdev(logs) if len(logs) > 1 else 0.0
    return out


def _draw(pool: Sequence[MetricPair], count: int, change: float, rng: random.Random,
          smooth: Mapping[str, float]) -> list[Pair]:
    out: list[Pair] = []
    for _ in range(count):
        b, h = pool[rng.randrange(len(pool))]
        if rng.random() < 0.5:
            b, h = h, b
        out.append((b, {m: v * (1 + change) * math.exp(rng.gauss(0.0, smooth.get(m, 0.0))) for m, v in h.items()}))
    return out


def simulate(pool: Sequence[MetricPair], change: float, *, design: SequentialDesign, config: CompareConfig,
             sequences: int, seed: int) -> Outcomes:
    """Judge *sequences* resampled sequences with *change* injected into every head."""
    rng = random.Random(seed)
    counts = {REGRESSED: 0, UNCHANGED: 0, UNDECIDED: 0}
    used = []
    smooth = bandwidths(pool)
    for _ in range(sequences):
        pairs = _draw(pool, design.max_pairs, change, rng, smooth)

        def sides(n: int, pairs: list[Pair] = pairs) -> tuple[Any, Any]:
            return (metric_side("base", {KEY: [b for b, _ in pairs[:n] if b is not None]}),
                    metric_side("head", {KEY: [h for _, h in pairs[:n] if h is not None]}))

        decision = judge_metric_pairs({KEY: pairs}, sides, design=design, config=config, final=True)
        counts[decision.state] += 1
        used.append(decision.pairs)
    return Outcomes(change, sequences, counts[REGRESSED], counts[UNCHANGED], counts[UNDECIDED], tuple(used))


def study(sources: Mapping[str, Sequence[MetricPair]], *, design: SequentialDesign, config: CompareConfig,
          sequences: int = 1000, changes: Sequence[float] = (0.0, 0.10), seed: int = 20261205) -> dict[str, Any]:
    """Every source at every change; plain JSON-able values."""
    out = []
    for name, pool in sources.items():
        rows = [simulate(pool, change, design=design, config=config, sequences=sequences, seed=seed + i).record()
                for i, change in enumerate(changes)]
        out.append({"source": name, "pairs": len(pool), "spread": round(spread(pool), 4), "outcomes": rows})
    return {"design": {"min_pairs": design.min_pairs, "max_pairs": design.max_pairs, "alpha": design.alpha,
                       "power": design.power, "rho": design.rho},
            "config": {"source": config.source, "paired_rel": config.paired_rel,
                       "total_rel": config.threshold(HEADLINE_METRIC).rel,
                       "total_floor_s": config.threshold(HEADLINE_METRIC).floor_s},
            "sequences": sequences, "seed": seed, "sources": out}


def render(report: Mapping[str, Any]) -> str:
    """The study as a markdown table."""
    d = report["design"]
    lines = [f"Sequential gate: {d['min_pairs']}-{d['max_pairs']} pairs, alpha {d['alpha']:g} and beta "
             f"{1 - d['power']:.2g} spent over the looks (t^{d['rho']:g}); {report['sequences']} resampled "
             f"sequences per row (seed {report['seed']}).", "",
             "| pairs from | real pairs | spread of log ratios | injected | regressed | unchanged | undecided "
             "| mean pairs | 95th pct pairs |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for src in report["sources"]:
        for o in src["outcomes"]:
            lines.append(f"| {src['source']} | {src['pairs']} | {src['spread']:.3f} | {o['change'] * 100:+.0f} % | "
                         f"{o['regressed_rate']:.1%} | {o['unchanged_rate']:.1%} | {o['undecided_rate']:.1%} | "
                         f"{o['mean_pairs']:.1f} | {o['p95_pairs']} |")
    return "\n".join(lines)
