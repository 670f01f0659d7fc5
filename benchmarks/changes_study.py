"""How well ``coldstart changes`` places a step, on histories with the measured noise (no asv, no server).

For each spread (log-ratio sd 0.035 quiet, 0.085 noisy), phase and starts per commit: N histories of
1,000 commits built like tests/history_builder.py (real CPU-lane starts, log-normal noise), a +15 % step
in the phase at a random commit; reports how often a step is found, how often within one commit of
where it was put, and how many steps are reported in an untouched phase of the same history::

    .venv/bin/python benchmarks/changes_study.py --histories 40
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_coldstart.history import changes as ch
from pytest_coldstart.model.case import CaseKey
from tests import history_builder as hb


def one(seed: int, sd: float, phase: str, repeat: int, pool: list, commits: int = 1000) -> tuple[int | None, int]:
    rng = random.Random(seed)
    at = rng.randrange(100, commits - 100)
    other = "config" if phase != "config" else "imports"
    stepped, untouched = [], []
    for i in range(commits):
        def factor(p: str, i: int = i) -> float:
            return 1.15 if p == phase and i >= at else 1.0

        runs = [hb.synthetic_run(rng.choice(pool), model="m", optimization="o",
                                 scale=math.exp(rng.gauss(0, sd / math.sqrt(2))), phase_factor=factor, rng=rng,
                                 jitter_sd=sd / 2, stamp="x") for _ in range(repeat)]
        stepped.append(statistics.median(r.phase_durations()[phase] or 0 for r in runs))
        untouched.append(statistics.median(r.phase_durations()[other] or 0 for r in runs))

    def series(values: list[float]) -> ch.Series:
        return ch.Series("m", CaseKey("m", "o", "vllm"), phase, tuple(range(commits)), tuple(values))

    cuts = [c for c, *_ in ch.judge(series(stepped), ch.Settings())]
    offset = min((c - at for c in cuts), key=abs, default=None)
    return offset, len(ch.judge(series(untouched), ch.Settings()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=int, default=40)
    parser.add_argument("--phases", default="torch_compile,engine_init,config")
    parser.add_argument("--repeats", default="1,3", help="starts per commit (the nightly records 3)")
    args = parser.parse_args(argv)
    pool = hb.real_starts()
    print(f"{'spread':>6} {'phase':<14} {'starts':>6} {'found':>7} {'within 1':>9} {'untouched steps':>16}")
    for sd in (hb.QUIET_SD, hb.NOISY_SD):
        for phase in args.phases.split(","):
            for repeat in (int(r) for r in args.repeats.split(",")):
                results = [one(seed, sd, phase, repeat, pool) for seed in range(args.histories)]
                found = sum(o is not None for o, _ in results)
                near = sum(o is not None and abs(o) <= 1 for o, _ in results)
                false = sum(f for _, f in results)
                n = args.histories
                print(f"{sd:>6} {phase:<14} {repeat:>6} {found:>3}/{n:<3} {near:>5}/{n:<3} {false:>16}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
