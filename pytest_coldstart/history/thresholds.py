"""What counts as a change: thresholds per metric and the compare settings, read from ``compare.toml``.

Pure values and their one loader (``load_config``): the schema work of issue 18 validates the same keys,
so every key ``compare.toml`` may hold is listed once, in ``CONFIG_KEYS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_coldstart.history.samples import METRICS
from pytest_coldstart.history.stats import TARGET_POWER, min_p_value
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml

#: What an undecided verdict does to the exit code: "fail" (2, could not decide) or "pass" (0, still printed
#: UNDECIDED in words). Only an explicit ``on_undecided = "pass"`` passes.
ON_UNDECIDED = ("fail", "pass")
#: Every top-level key compare.toml may hold.
CONFIG_KEYS = ("alpha", "min_samples", "default", "metrics", "paired", "paired_rel_threshold", "power",
               "on_undecided")


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

    def change_that_matters(self, base_median_s: float) -> float:
        """The smallest relative change this threshold calls a regression at *base_median_s*: both the
        relative threshold and the floor must be crossed, so the larger of the two."""
        if base_median_s <= 0:
            return self.rel
        return max(self.rel, self.floor_s / base_median_s)


@dataclass(frozen=True)
class CompareConfig:
    """Thresholds per metric and the statistical test's settings.

    The defaults come from the CPU-lane noise study (docs/explanation/regressions.md);
    ``benchmarks/compare.toml`` overrides them per metric.
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
    #: "unchanged" needs evidence that could have shown the change that matters with this probability.
    power: float = TARGET_POWER
    #: "fail": an undecided case exits 2; "pass": it exits 0 (the words still say UNDECIDED).
    on_undecided: str = "fail"

    def threshold(self, metric: str) -> Threshold:
        return self.metrics.get(metric, self.default)


def _number(where: str, key: str, value: object, low: float, high: float) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not low <= value <= high):
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
        power = 0.95                # "unchanged" only when the change that matters was this likely caught
        on_undecided = "fail"       # or "pass": exit 0 on UNDECIDED (still printed as such)
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
    from pytest_coldstart.model import schemas  # lazily: pydantic only when a compare config is read

    schemas.validate(schemas.CompareFile, raw, file=path)  # typed and in range before the checks below
    unknown = set(raw) - set(CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(CONFIG_KEYS)}")
    paired = raw.get("paired", False)
    if not isinstance(paired, bool):
        raise ConfigError(f"{path}: paired = {paired!r}; expected true or false")
    on_undecided = raw.get("on_undecided", "fail")
    if on_undecided not in ON_UNDECIDED:
        raise ConfigError(f"{path}: on_undecided = {on_undecided!r}; expected \"fail\" (exit 2, the default) or "
                          "\"pass\" (exit 0, still printed UNDECIDED)")
    paired_rel = _number(str(path), "paired_rel_threshold", raw.get("paired_rel_threshold", 0.05), 0, 10)
    power = _number(str(path), "power", raw.get("power", TARGET_POWER), 0.5, 0.999)
    built = CompareConfig()
    default = _threshold(f"{path} [default]", raw.get("default", {}), built.default)
    metrics_raw = raw.get("metrics", {})
    if not isinstance(metrics_raw, dict):
        raise ConfigError(f"{path}: metrics = {metrics_raw!r}; expected tables [metrics.NAME]")
    metrics = {}
    for name, table in metrics_raw.items():
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
    return CompareConfig(default, metrics, alpha, min_samples, str(path), paired, paired_rel, power, on_undecided)
