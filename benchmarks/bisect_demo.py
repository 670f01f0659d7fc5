"""``coldstart bisect`` on the CPU lane: which of three commits made the cold start slower.

A scratch project (tests/history_builder.slowdown_project) gets a good commit and three more; the one
named by ``--slow`` (1-3) merges the noise study's slowdown probe into ``baseline`` (a bigger profiling
batch: real extra work in memory_profiling, about +9 % of the total on 2 cores). Then, with every real
start holding the machine lock::

    flock /tmp/coldstart-real.lock .venv/bin/python benchmarks/bisect_demo.py --slow 1 --out .coldstart/bisect-demo

runs ``coldstart bisect --good GOOD --bad LAST`` on it (each commit in its own worktree, interleaved
pairs of real vLLM cold starts at each midpoint) and prints its output and the minutes it took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import history_builder as hb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=1, choices=(1, 2, 3), help="which commit after the good one "
                        "carries the slowdown (default: 1)")
    parser.add_argument("--commits", type=int, default=3, help="commits after the good one (default: 3)")
    parser.add_argument("--min-pairs", default="3")
    parser.add_argument("--max-pairs", default="8")
    parser.add_argument("--out", default=".coldstart/bisect-demo", help="scratch directory (emptied first)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    layout = ["slow" if i == args.slow else "docs" for i in range(1, args.commits + 1)]
    project, made = hb.slowdown_project(out, layout)
    print(f"scratch project {project}: good {made[0][:8]}, then "
          + ", ".join(f"{h[:8]} ({kind})" for h, kind in zip(made[1:], layout, strict=True)), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "bisect", "--repo", str(project),
                           "--good", made[0], "--bad", made[-1], "--min-pairs", args.min_pairs, "--max-pairs",
                           args.max_pairs, "--workdir", str(REPO / ".coldstart"), "--out", str(out / "bisect")],
                          env=env, text=True)
    minutes = (time.monotonic() - t0) / 60
    expected = made[args.slow][:8]
    print(f"bisect exit {proc.returncode} in {minutes:.1f} min; the slowdown was put in {expected}", flush=True)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
