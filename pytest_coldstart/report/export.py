"""Cold-start results and verdicts as other tools read them.

* ``summary_record`` / ``comparison_record``: ``coldstart summary --json`` / ``coldstart compare --json``;
* ``github_benchmark``: github-action-benchmark's ``customSmallerIsBetter`` (a list of
  ``{name, unit, value, range, extra}``), one entry per case x metric (median over starts);
* ``bencher_bmf``: Bencher Metric Format, ``{benchmark: {measure: {value, lower_value, upper_value}}}``
  (min / median / max over starts);
* ``pytest_benchmark``: a pytest-benchmark JSON file (``pytest-benchmark compare`` reads it), one
  "benchmark" per case and metric whose rounds are the cold starts.

Only observed values are exported: a phase not seen in a start is left out, never written as 0.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_coldstart.history.compare import Comparison
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.case import CaseKey, group_by_case
from pytest_coldstart.model.result import RunResult

FORMATS = ("github", "bencher", "pytest-benchmark")
HEADLINE = ("total_ready_s", "ttft_s")


def _metrics(run: RunResult) -> dict[str, float]:
    """Observed seconds of one start: headline metrics, then every phase (``phase.NAME``)."""
    values = {m: getattr(run, m) for m in HEADLINE}
    values.update({f"phase.{name}": s for name, s in run.phase_durations().items()})
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def case_samples(runs: Iterable[RunResult]) -> dict[CaseKey, dict[str, list[float]]]:
    """Per case, per metric: the seconds of every successful start (failed starts measure nothing)."""
    out: dict[CaseKey, dict[str, list[float]]] = {}
    for key, group in group_by_case([r for r in runs if r.ok]).items():
        metrics: dict[str, list[float]] = {}
        for run in group:
            for metric, value in _metrics(run).items():
                metrics.setdefault(metric, []).append(value)
        out[key] = metrics
    return out


def _name(key: CaseKey) -> str:
    return f"{key.model}/{key.optimization}/{key.launcher}"


def summary_record(runs: Sequence[RunResult], budgets: Budgets | None) -> dict[str, Any]:
    cases = []
    samples = case_samples(runs)
    for key, group in group_by_case(runs).items():
        metrics = samples.get(key, {})
        cases.append({
            "model": key.model, "optimization": key.optimization, "launcher": key.launcher,
            "starts": len(group), "ok": sum(r.ok for r in group),
            "errors": [r.error for r in group if not r.ok],
            "median_s": {m: statistics.median(v) for m, v in metrics.items()},
            "samples_s": metrics,
            "budgets_s": budgets.for_case(key.model, key.optimization, key.launcher) if budgets else {},
        })
    return {"budgets_source": budgets.path if budgets else None, "cases": cases}


def comparison_record(comparison: Comparison) -> dict[str, Any]:
    rows = []
    for row in comparison.rows:
        record = dataclasses.asdict(row)
        record["case"] = dataclasses.asdict(row.case)
        record.update(base_median_s=row.base_median_s, head_median_s=row.head_median_s, ratio=row.ratio,
                      failing=row.failing)
        rows.append(record)
    config = comparison.config
    return {"base": comparison.base, "head": comparison.head, "exit_code": comparison.exit_code,
            "status": comparison.status, "verdict": comparison.verdict,
            "cases": [{"case": dataclasses.asdict(key), "verdict": verdict} for key, verdict in comparison.cases.items()],
            "problems": list(comparison.problems), "notes": list(comparison.notes),
            "thresholds": {"source": config.source, "alpha": config.alpha, "min_samples": config.min_samples,
                           "power": config.power, "on_undecided": config.on_undecided,
                           "default": dataclasses.asdict(config.default),
                           "metrics": {k: dataclasses.asdict(v) for k, v in config.metrics.items()}},
            "rows": rows}


def github_benchmark(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """github-action-benchmark ``tool: customSmallerIsBetter``."""
    out = []
    for key, metrics in case_samples(runs).items():
        for metric, values in metrics.items():
            out.append({"name": f"{_name(key)} {metric}", "unit": "s", "value": round(statistics.median(values), 4),
                        "range": f"{min(values):.3f}..{max(values):.3f}",
                        "extra": f"{len(values)} cold start(s), median"})
    return out


def bencher_bmf(runs: Sequence[RunResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Bencher Metric Format: one benchmark per case, one measure per metric (seconds)."""
    return {_name(key): {metric.replace(".", "_"): {"value": statistics.median(v), "lower_value": min(v),
                                                      "upper_value": max(v)} for metric, v in metrics.items()}
            for key, metrics in case_samples(runs).items()}


def _stats(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    n = len(ordered)
    q1, q3 = (ordered[0], ordered[-1]) if n < 4 else tuple(statistics.quantiles(ordered, n=4)[i] for i in (0, 2))
    mean = statistics.fmean(ordered)
    stddev = statistics.stdev(ordered) if n > 1 else 0.0
    iqr = q3 - q1
    low = [v for v in ordered if v >= q1 - 1.5 * iqr]
    high = [v for v in ordered if v <= q3 + 1.5 * iqr]
    return {"min": ordered[0], "max": ordered[-1], "mean": mean, "stddev": stddev, "rounds": n,
            "median": statistics.median(ordered), "iqr": iqr, "q1": q1, "q3": q3,
            "iqr_outliers": sum(v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr for v in ordered),
            "stddev_outliers": sum(abs(v - mean) > stddev for v in ordered) if stddev else 0,
            "outliers": "0;0", "ld15iqr": low[0] if low else ordered[0], "hd15iqr": high[-1] if high else ordered[-1],
            "ops": 1 / mean if mean else 0.0, "total": sum(ordered), "data": list(ordered), "iterations": 1}


def pytest_benchmark(runs: Sequence[RunResult], *, version: str = "5.1.0") -> dict[str, Any]:
    """A pytest-benchmark JSON document (rounds = cold starts; seconds)."""
    env = runs[0].environment if runs else {}
    benchmarks = []
    for key, metrics in case_samples(runs).items():
        for metric, values in metrics.items():
            name = f"test_cold_start[{key.model}-{key.optimization}-{key.launcher}]::{metric}"
            benchmarks.append({
                "group": metric, "name": name, "fullname": f"benchmarks/test_coldstart.py::{name}",
                "params": {"model": key.model, "optimization": key.optimization, "launcher": key.launcher},
                "param": f"{key.model}-{key.optimization}-{key.launcher}",
                "extra_info": {"metric": metric, "unit": "s"},
                "options": {"disable_gc": False, "timer": "cold start", "min_rounds": 1, "max_time": 0,
                            "min_time": 0, "warmup": False},
                "stats": _stats(values)})
    started = sorted(r.started_at for r in runs)
    return {"machine_info": {"node": platform.node(), "processor": str(env.get("cpu_model", "")),
                             "machine": platform.machine(), "python_implementation": platform.python_implementation(),
                             "python_version": str(env.get("python", platform.python_version())),
                             "release": platform.release(), "system": platform.system(),
                             "cpu": {"brand_raw": str(env.get("cpu_model", "")), "count": env.get("cpu_cores")},
                             "gpu": env.get("gpu_name")},
            "commit_info": {"id": env.get("git_commit"), "dirty": None, "project": "pytest-coldstart"},
            "benchmarks": benchmarks, "datetime": started[-1] if started else "", "version": version}


def export(runs: Sequence[RunResult], fmt: str) -> Any:
    return {"github": github_benchmark, "bencher": bencher_bmf, "pytest-benchmark": pytest_benchmark}[fmt](runs)
