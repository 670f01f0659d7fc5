"""The statistics behind the verdicts: tests, spreads and what a sample size can detect.

Pure functions of numbers (no thresholds, no verdict words); scipy does the distributions. Like asv's
``_stats`` module, kept apart from the command that uses them (``verdict`` decides, ``thresholds`` says what
counts). Changes are relative and judged on log ratios: a +10 % slowdown is ``log(1.10)`` whatever the size
of the start.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_coldstart.model.errors import ConfigError

#: The change the paired gate is sized to catch, and how surely (docs/explanation/regressions.md).
TARGET_CHANGE, TARGET_POWER = 0.10, 0.95
#: The smallest spread of log ratios believed: two cold starts never agree to better than ~0.5 % (clock,
#: scheduling), so a handful of pairs that happen to agree closer say nothing stronger than that.
MIN_SPREAD = 0.005
#: The share of pairs the robust statistic trims from each end (Yuen's trimmed mean: 20 % is the usual
#: choice; it trims one pair of 5-9, two of 10-14, so one wild pair cannot move the verdict).
TRIM = 0.2


def _scipy_stats() -> Any:  # scipy.stats ships no type information
    try:
        import scipy.stats
    except ImportError:
        raise ConfigError("the statistical tests need scipy: pip install 'pytest-coldstart[asv]'") from None
    return scipy.stats


def min_p_value(n_base: int, n_head: int) -> float:
    """The smallest one-sided Mann-Whitney p-value *n_base* vs *n_head* samples can give.

    1 / C(n_base + n_head, n_base): 3 vs 3 -> 0.05, 4 vs 4 -> 0.014, 5 vs 5 -> 0.004
    (asv's ``_stats.is_different`` makes the same check before testing).
    """
    return 1.0 / math.comb(n_base + n_head, n_base)


def mann_whitney_p(head: Sequence[float], base: Sequence[float], alternative: str) -> float:
    """One-sided Mann-Whitney U p-value (``alternative`` "greater": head slower)."""
    p = float(_scipy_stats().mannwhitneyu(head, base, alternative=alternative).pvalue)
    return 1.0 if math.isnan(p) else p


def log_ratios(base: Sequence[float], head: Sequence[float]) -> list[float]:
    return [math.log(h / b) for b, h in zip(base, head, strict=True) if b > 0 and h > 0]


def log_spread(values: Sequence[float]) -> float:
    """Standard deviation of log values (the relative spread of one side); 0 with fewer than 2."""
    logs = [math.log(v) for v in values if v > 0]
    return statistics.stdev(logs) if len(logs) > 1 else 0.0


def grow(log_change: float) -> float:
    """exp(x) - 1, inf where it would overflow (a spread so wide nothing short of x e^50 is detectable)."""
    return math.exp(log_change) - 1 if log_change < 50 else math.inf


@functools.lru_cache(maxsize=4096)
def _z(q: float) -> float:
    return float(_scipy_stats().norm.ppf(q))


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    return float(_scipy_stats().t.ppf(q, df))


def detectable_change(sd_log: float, n: int, *, alpha: float, power: float = TARGET_POWER) -> float:
    """The smallest relative slowdown *n* pairs catch with probability *power* at one-sided *alpha*,
    given the spread *sd_log* of the paired log ratios (normal approximation of the paired t-test)."""
    if n < 2 or sd_log <= 0:
        return math.inf if n < 2 else 0.0
    return grow((t_quantile(1 - alpha, n - 1) + _z(power)) * sd_log / math.sqrt(n))


def recommended_pairs(sd_log: float, *, alpha: float, change: float = TARGET_CHANGE, power: float = TARGET_POWER,
                      most: int = 50) -> int | None:
    """The fewest pairs that catch *change* with *power* at this spread (None: more than *most*)."""
    if sd_log <= 0:
        return 2
    # The normal approximation is a lower bound (t quantiles exceed z ones): start the search there.
    first = max(2, math.floor(((_z(1 - alpha) + _z(power)) * sd_log / math.log1p(change)) ** 2))
    for n in range(first, most + 1):
        if detectable_change(sd_log, n, alpha=alpha, power=power) <= change:
            return n
    return None


def detectable_change_unpaired(sd_log: float, n_base: int, n_head: int, *, alpha: float | None,
                               power: float = TARGET_POWER, ratio_rel: float = 0.0) -> float:
    """The smallest relative slowdown two independent samples catch with probability *power*.

    With a test (*alpha* given): the two-sample t approximation of the Mann-Whitney test (its efficiency
    is 0.955 of the t-test's on normal data) at one-sided *alpha*. Without one (*alpha* None, the ratio
    rule alone): the ratio of medians must clear *ratio_rel*, so the change must be that big plus the
    noise of the ratio at *power*. Unknown spread (a side with one start) -> inf: nothing can be ruled out.
    """
    if n_base < 2 or n_head < 2:
        return math.inf
    se = sd_log * math.sqrt(1 / n_base + 1 / n_head)
    if alpha is None:
        # The ratio of medians: a median is noisier than a mean (sqrt(pi/2) on normal data).
        return grow(math.log1p(ratio_rel) + _z(power) * se * math.sqrt(math.pi / 2))
    return grow((t_quantile(1 - alpha, n_base + n_head - 2) + _z(power)) * se / math.sqrt(0.955))


def recommended_starts(sd_log: float, *, alpha: float, change: float, power: float = TARGET_POWER,
                       most: int = 50) -> int | None:
    """The fewest starts per side the unpaired test needs to catch *change* with *power*."""
    if sd_log <= 0:
        return 2
    first = max(2, math.floor(2 * ((_z(1 - alpha) + _z(power)) * sd_log / math.log1p(change)) ** 2))
    for n in range(first, most + 1):
        if detectable_change_unpaired(sd_log, n, n, alpha=alpha, power=power) <= change:
            return n
    return None


def paired_t_p(logs: Sequence[float]) -> tuple[float, float]:
    """One-sided paired t-test p-values on log ratios: (p that the head is slower, p that it is faster)."""
    n = len(logs)
    mean = statistics.fmean(logs)
    sd = max(statistics.stdev(logs), MIN_SPREAD) if n > 1 else 0.0
    if sd > 0:
        p_slower = float(_scipy_stats().t.sf(mean / (sd / math.sqrt(n)), n - 1))
        return p_slower, 1 - p_slower
    return (0.0 if mean > 0 else 1.0), (0.0 if mean < 0 else 1.0)


@dataclass(frozen=True)
class Trimmed:
    """Yuen's trimmed-mean statistic of log ratios: location, its standard error and degrees of freedom."""

    n: int
    mean: float
    se: float
    df: int

    def p_above(self, shift: float) -> float:
        """One-sided p-value against "the true log ratio is at most *shift*" (small: it is above)."""
        if self.se <= 0:
            return 0.0 if self.mean > shift else 1.0
        return float(_scipy_stats().t.sf((self.mean - shift) / self.se, self.df))

    def p_below(self, shift: float) -> float:
        """One-sided p-value against "the true log ratio is at least *shift*" (small: it is below)."""
        if self.se <= 0:
            return 0.0 if self.mean < shift else 1.0
        return float(_scipy_stats().t.cdf((self.mean - shift) / self.se, self.df))

    def detectable(self, alpha: float, power: float) -> float:
        """The relative change this many pairs at this spread catch with *power* at one-sided *alpha*."""
        if self.df < 1:
            return math.inf
        if self.se <= 0:
            return 0.0
        return grow((t_quantile(1 - alpha, self.df) + _z(power)) * self.se)

    @property
    def spread(self) -> float:
        """The spread of one pair the standard error implies (winsorised, so one wild pair barely counts)."""
        return self.se * math.sqrt(self.n)


def trimmed(logs: Sequence[float], trim: float = TRIM) -> Trimmed:
    """Yuen's one-sample trimmed t on *logs*: trim ``floor(trim * n)`` from each end; the winsorised
    variance gives the standard error ``s_w / ((1 - 2 trim) sqrt(n))`` on ``n - 2g - 1`` degrees of freedom
    (Wilcox, *Introduction to Robust Estimation*, 4.6)."""
    n = len(logs)
    ordered = sorted(logs)
    g = int(math.floor(trim * n))
    kept = ordered[g:n - g]
    mean = statistics.fmean(kept) if kept else math.nan
    winsor = [ordered[g]] * g + kept + [ordered[n - g - 1]] * g if kept else []
    h = n - 2 * g
    if n < 2 or h < 2:
        return Trimmed(n, mean, math.inf, 0)
    s_w = max(statistics.stdev(winsor), MIN_SPREAD)
    return Trimmed(n, mean, s_w / ((h / n) * math.sqrt(n)), h - 1)
