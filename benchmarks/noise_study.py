"""Noise study for the PR gate, on the CPU lane (README, "How regressions are decided").

Measure (about 55 s per cold start on 2 quiet cores; ~20 minutes for 10 + 10)::

    .venv/bin/python benchmarks/noise_study.py run --baseline 10 --slowed 10 --out .coldstart/noise-study

Baseline and slowed starts alternate (A B A B ...), each in its own pytest
process, so drift on the machine hits both pools alike. The slowed side is the
baseline plus ``slowdown_probe`` from benchmarks/optimizations.toml, merged into
``baseline`` in a generated registry: to the gate it looks exactly like a PR
that made startup slower. The machine must be quiet: other servers running at
the same time are counted per start and reported.

A/A pairs for the paired gate (both sides the same code, base_i then head_i, like the PR workflow)::

    .venv/bin/python benchmarks/noise_study.py run --aa --baseline 8 --slowed 8 --out .coldstart/aa-study
    .venv/bin/python benchmarks/paired_study.py --interleaved .coldstart/aa-study

Analyse (seconds; resamples the pools with the compare rule)::

    .venv/bin/python benchmarks/noise_study.py analyze .coldstart/noise-study --sizes 1,2,3,4,5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_coldstart.history.compare import load_config
from pytest_coldstart.history.noise import render_report, slowed_registry, study_report
from pytest_coldstart.history.sweep import run_logged
from pytest_coldstart.model.result import load_results


def _others() -> int:
    """vLLM servers running that this study did not start (they make the numbers noisy)."""
    try:
        out = subprocess.run(["pgrep", "-f", "vllm.entrypoints"], capture_output=True, text=True, timeout=10)
    except OSError:
        return -1
    return len(out.stdout.split())


def _one(side: str, out: Path, registry: Path, model: str, timeout_s: float) -> dict[str, object]:
    results = out / side
    cmd = [sys.executable, "-m", "pytest", str(REPO / "benchmarks"), "-m", "coldstart", "-p", "no:cacheprovider",
           f"--rootdir={REPO}", f"--coldstart-results={results}", f"--coldstart-registry={registry}",
           f"--model={model}", "--optimization=baseline", "-q"]
    started = time.time()
    before = {"side": side, "load1": os.getloadavg()[0], "other_vllm": _others(), "started": started}
    code = run_logged(cmd, out / "pytest.log", timeout_s=timeout_s, cwd=REPO)
    return {**before, "exit": code, "seconds": round(time.time() - started, 1)}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.aa:  # A/A: both sides the same code, interleaved like the PR workflow's base_i / head_i
        sides = (("base", args.baseline, REPO / "benchmarks"), ("head", args.slowed, REPO / "benchmarks"))
    else:
        slowed = slowed_registry(REPO / "benchmarks", out / "registry-slowed", probe=args.probe)
        sides = (("baseline", args.baseline, REPO / "benchmarks"), ("slowed", args.slowed, slowed))
    log = out / "conditions.jsonl"
    for i in range(max(args.baseline, args.slowed)):
        for side, count, registry in sides:
            if i < count:
                entry = _one(side, out, registry, args.model, args.timeout)
                with log.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")
                print(f"[{i + 1}] {side}: exit {entry['exit']} in {entry['seconds']} s "
                      f"(load {entry['load1']:.1f}, other vLLM processes {entry['other_vllm']})", flush=True)
    print(f"done; analyse with: {sys.executable} {__file__} analyze {out}")
    return 0


def analyze(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    config = load_config(Path(args.config))
    report = study_report(load_results(out / "baseline"), load_results(out / "slowed"), config,
                          [int(n) for n in args.sizes.split(",")], trials=args.trials)
    conditions = [json.loads(line) for line in (out / "conditions.jsonl").read_text().splitlines()] \
        if (out / "conditions.jsonl").is_file() else []
    report["conditions"] = {"starts": len(conditions),
                            "max_load1": max((c["load1"] for c in conditions), default=None),
                            "starts_with_other_vllm": sum(1 for c in conditions if c["other_vllm"] > 0)}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    text = render_report(report)
    (out / "report.md").write_text(text + "\n")
    print(text)
    print(f"\nconditions: {report['conditions']}\nwritten: {out / 'report.json'}, {out / 'report.md'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="measure the two pools (real cold starts)")
    p.add_argument("--baseline", type=int, default=10)
    p.add_argument("--slowed", type=int, default=10)
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--probe", default="slowdown_probe", help="optimization whose settings slow the baseline")
    p.add_argument("--out", default=str(REPO / ".coldstart" / "noise-study"))
    p.add_argument("--timeout", type=float, default=900, help="seconds per start (default 900)")
    p.add_argument("--aa", action="store_true", help="A/A instead: sides base/ and head/ run the same code, "
                   "interleaved (for benchmarks/paired_study.py --interleaved)")
    p.set_defaults(func=run)
    p = sub.add_parser("analyze", help="resample the pools with the compare rule")
    p.add_argument("dir")
    p.add_argument("--sizes", default="1,2,3,4,5")
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--config", default=str(REPO / "benchmarks" / "compare.toml"))
    p.set_defaults(func=analyze)
    args = parser.parse_args()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
