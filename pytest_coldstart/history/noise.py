"""The noise study: how often does the gate cry wolf, and how many starts does it need?

Pure analysis over two pools of real cold starts of the same case: ``a`` (the
code as is) and ``b`` (the same code with a setting that genuinely costs time,
``slowdown_probe`` in ``benchmarks/optimizations.toml``, merged into the
baseline the way a PR would change it). ``benchmarks/noise_study.py`` measures
the pools; this module resamples them:

* A/A: two disjoint draws of n starts from ``a`` compared with ``compare`` ->
  the false-alarm rate (any failing row), per metric and overall;
* A/B: n from ``a`` as base, n from ``b`` as head -> detection power, overall
  and for the phase the setting slows.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.history.compare import CompareConfig, compare
from pytest_coldstart.history.samples import METRICS, CaseSamples, SampleSet, machine_identity, run_metrics
from pytest_coldstart.model.case import CaseKey
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml, toml_tables
from pytest_coldstart.model.result import RunResult

Run = Mapping[str, float]
KEY = CaseKey("study", "baseline", "vllm")


def pool(results: Sequence[RunResult]) -> list[dict[str, float]]:
    """Metric seconds of each successful run (failed runs are not noise; they are reported apart)."""
    return [run_metrics(r) for r in results if r.ok]


def _side(runs: Sequence[Run], label: str) -> SampleSet:
    samples: dict[str, tuple[float, ...]] = {}
    for run in runs:
        for metric, value in run.items():
            samples[metric] = samples.get(metric, ()) + (value,)
    return SampleSet(label, {KEY: CaseSamples(KEY, samples, len(runs))}, {})


def _failing(base: Sequence[Run], head: Sequence[Run], config: CompareConfig) -> set[str]:
    result = compare(_side(base, "base"), _side(head, "head"), config)
    return {r.metric for r in result.rows if r.failing}


@dataclass(frozen=True)
class Figures:
    """What one sample size n per side gives."""

    n: int
    aa_trials: int
    aa_alarms: int
    aa_alarm_metrics: Mapping[str, int]
    ab_trials: int
    ab_detected: int
    ab_named: int
    target: str
    ab_total: int = 0

    @property
    def false_alarm_rate(self) -> float:
        return self.aa_alarms / self.aa_trials if self.aa_trials else float("nan")

    @property
    def power(self) -> float:
        return self.ab_detected / self.ab_trials if self.ab_trials else float("nan")

    @property
    def named_rate(self) -> float:
        return self.ab_named / self.ab_trials if self.ab_trials else float("nan")

    @property
    def total_rate(self) -> float:
        """How often total_ready_s alone would have caught it."""
        return self.ab_total / self.ab_trials if self.ab_trials else float("nan")


def _splits(n_pool: int, n: int, trials: int, rng: random.Random) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(base, head) index tuples of n disjoint starts each: every ordered split when there are at most
    *trials* of them, else *trials* uniform random ones."""
    total = math.comb(n_pool, 2 * n) * math.comb(2 * n, n) if 2 * n <= n_pool else 0
    if total == 0:
        return []
    if total <= trials:
        out = []
        for chosen in itertools.combinations(range(n_pool), 2 * n):
            for base in itertools.combinations(chosen, n):
                out.append((base, tuple(i for i in chosen if i not in base)))
        return out
    picks = []
    for _ in range(trials):
        drawn = rng.sample(range(n_pool), 2 * n)
        picks.append((tuple(drawn[:n]), tuple(drawn[n:])))
    return picks


def _pairs(n_a: int, n_b: int, n: int, trials: int, rng: random.Random) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """n starts from each pool: all combinations when few enough, else random ones."""
    if n > n_a or n > n_b:
        return []
    if math.comb(n_a, n) * math.comb(n_b, n) <= trials:
        return list(itertools.product(itertools.combinations(range(n_a), n), itertools.combinations(range(n_b), n)))
    return [(tuple(rng.sample(range(n_a), n)), tuple(rng.sample(range(n_b), n))) for _ in range(trials)]


def figures(a: Sequence[Run], b: Sequence[Run], n: int, config: CompareConfig, *, target: str,
            trials: int = 2000, seed: int = 1234) -> Figures:
    """A/A false alarms and A/B detection at *n* starts per side.

    A/A compares disjoint draws (a start is never compared with itself); with
    ``2n > len(a)`` there are no A/A trials at that n.
    """
    rng = random.Random(seed)
    aa_alarms, per_metric = 0, dict.fromkeys(METRICS, 0)
    aa = _splits(len(a), n, trials, rng)
    for base, head in aa:
        bad = _failing([a[i] for i in base], [a[i] for i in head], config)
        aa_alarms += bool(bad)
        for metric in bad:
            per_metric[metric] = per_metric.get(metric, 0) + 1
    detected = named = total = 0
    ab = _pairs(len(a), len(b), n, trials, rng)
    for ia, ib in ab:
        bad = _failing([a[i] for i in ia], [b[i] for i in ib], config)
        detected += bool(bad)
        named += target in bad
        total += "total_ready_s" in bad
    return Figures(n, len(aa), aa_alarms, {m: c for m, c in per_metric.items() if c}, len(ab), detected, named,
                   target, total)


def spread(runs: Sequence[Run]) -> dict[str, dict[str, float]]:
    """Per metric: median, min, max, coefficient of variation across the pool."""
    out = {}
    for metric in METRICS:
        values = [r[metric] for r in runs if metric in r]
        if len(values) < 2:
            continue
        mean = statistics.fmean(values)
        out[metric] = {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values),
                       "cv": statistics.stdev(values) / mean if mean else float("nan")}
    return out


def costliest_metric(a: Sequence[Run], b: Sequence[Run]) -> str:
    """The phase the slowdown lands in: largest median increase among the phases."""
    deltas = {m: statistics.median([r[m] for r in b if m in r]) - statistics.median([r[m] for r in a if m in r])
              for m in METRICS if m not in ("total_ready_s", "unaccounted_s", "ttft_s")
              and any(m in r for r in a) and any(m in r for r in b)}
    if not deltas:
        raise ConfigError("the two pools share no phase; did both sides run the same model?")
    return max(deltas, key=lambda m: deltas[m])


def study_report(a_results: Sequence[RunResult], b_results: Sequence[RunResult], config: CompareConfig,
                 sizes: Sequence[int], *, trials: int = 2000) -> dict[str, Any]:
    """Everything the README's table needs, as plain JSON-able values."""
    a, b = pool(a_results), pool(b_results)
    if len(a) < 2 or not b:
        raise ConfigError(f"need at least 2 successful baseline starts and 1 slowed start; have {len(a)} and {len(b)}")
    target = costliest_metric(a, b)
    med_a = statistics.median(r["total_ready_s"] for r in a)
    med_b = statistics.median(r["total_ready_s"] for r in b)
    rows = [figures(a, b, n, config, target=target, trials=trials) for n in sizes]
    return {
        "config": {"alpha": config.alpha, "min_samples": config.min_samples, "rel": config.default.rel,
                   "ratio_rel": config.default.ratio_rel_or_rel, "floor_s": config.default.floor_s,
                   "source": config.source},
        "pools": {"baseline_ok": len(a), "baseline_failed": len(a_results) - len(a), "slowed_ok": len(b),
                  "slowed_failed": len(b_results) - len(b)},
        "machine": machine_identity(a_results[0].environment), "vllm": a_results[0].environment.get("vllm"),
        "slowdown": {"target_phase": target, "total_median_a_s": med_a, "total_median_b_s": med_b,
                     "total_increase": med_b / med_a - 1,
                     "target_increase_s": statistics.median(r[target] for r in b if target in r)
                     - statistics.median(r[target] for r in a if target in r)},
        "spread_a": spread(a), "spread_b": spread(b),
        "by_n": [{"n": f.n, "aa_trials": f.aa_trials, "aa_alarms": f.aa_alarms,
                  "false_alarm_rate": f.false_alarm_rate, "aa_alarm_metrics": dict(f.aa_alarm_metrics),
                  "ab_trials": f.ab_trials, "power": f.power, "named_rate": f.named_rate,
                  "total_rate": f.total_rate} for f in rows],
    }


def render_report(report: Mapping[str, Any]) -> str:
    """The study as markdown (for the README section)."""
    s = report["slowdown"]
    c = report["config"]
    rule = (f"Rule ({c['source']}): +{c['rel'] * 100:.0f} % with the test (n >= {c['min_samples']}, p < {c['alpha']:g}), "
            f"+{c['ratio_rel'] * 100:.0f} % without it, floor {c['floor_s']:g} s.")
    lines = [rule, "", f"Pools: {report['pools']['baseline_ok']} baseline and {report['pools']['slowed_ok']} slowed cold starts "
             f"(vLLM {report['vllm']}, {report['machine'].get('cpu_cores')} cores). The slowdown costs "
             f"{s['target_increase_s']:+.1f} s in `{s['target_phase']}`; total median "
             f"{s['total_median_a_s']:.1f} s -> {s['total_median_b_s']:.1f} s ({s['total_increase'] * 100:+.0f} %).",
             "", "| starts per side | A/A comparisons | false alarms | A/B comparisons | detected | "
             f"`{s['target_phase']}` named | `total_ready_s` flagged |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["by_n"]:
        aa = (f"{row['aa_alarms']} ({row['false_alarm_rate'] * 100:.1f} %)" if row["aa_trials"] else "—")
        worst = ", ".join(f"{m} {c}" for m, c in sorted(row["aa_alarm_metrics"].items(), key=lambda x: -x[1])[:3])
        lines.append(f"| {row['n']} | {row['aa_trials'] or '—'} | {aa}{f' ({worst})' if worst else ''} | "
                     f"{row['ab_trials']} | {row['power'] * 100:.0f} % | {row['named_rate'] * 100:.0f} % | "
                     f"{row['total_rate'] * 100:.0f} % |")
    lines += ["", "| metric | median s | min-max s | CV |", "|---|---:|---:|---:|"]
    for metric, v in report["spread_a"].items():
        lines.append(f"| {metric} | {v['median_s']:.2f} | {v['min_s']:.2f}-{v['max_s']:.2f} | {v['cv'] * 100:.1f} % |")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} to TOML")


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _as_table(value: object) -> dict[str, object]:
    return dict(value) if isinstance(value, dict) else {}


def slowed_registry(src: Path, dst: Path, *, probe: str = "slowdown_probe", target: str = "baseline") -> Path:
    """A copy of the registry in *src* where *target* also carries *probe*'s engine args and env.

    That is what a PR that makes startup slower looks like to the gate: the
    same case name, a setting that costs time. models.toml is copied as is.
    """
    raw = load_toml(src / "optimizations.toml", "registry file")
    opts = toml_tables(raw, "optimizations", str(src / "optimizations.toml"))
    if probe not in opts or target not in opts:
        raise ConfigError(f"{src / 'optimizations.toml'} needs [optimizations.{probe}] and [optimizations.{target}]")
    merged = dict(opts[target])
    merged["engine_args"] = _as_list(opts[target].get("engine_args")) + _as_list(opts[probe].get("engine_args"))
    merged["env"] = {**_as_table(opts[target].get("env")), **_as_table(opts[probe].get("env"))}
    merged["description"] = f"{opts[target].get('description', target)} + {probe} (noise study, slowed side)"
    opts[target] = merged
    dst.mkdir(parents=True, exist_ok=True)
    body = [f"# Generated by pytest_coldstart.history.noise.slowed_registry from {src}: {target} + {probe}."]
    for name, table in opts.items():
        body.append(f"\n[optimizations.{name}]")
        body += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    (dst / "optimizations.toml").write_text("\n".join(body) + "\n", encoding="utf-8")
    (dst / "models.toml").write_text((src / "models.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return dst
