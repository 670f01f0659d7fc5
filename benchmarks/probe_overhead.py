"""What does looking inside cost? The in-vLLM probe (and py-spy) on vs off, paired and interleaved.

Both sides are the same ``ColdStartRunner`` start of one case (fresh, empty
caches every time); the only difference is ``Settings.probe`` (the probe's
``COLDSTART_EVENTS_FILE``) or, with ``--what profile``, ``Settings.profile``
(py-spy sampling every server process). Pairs alternate their order, so drift
on the machine hits both alike. The warm-up requests are off (they follow
/health and do not change time to ready).

    .venv/bin/python benchmarks/probe_overhead.py --pairs 3                  # probe: target <= 1.01
    .venv/bin/python benchmarks/probe_overhead.py --pairs 3 --what profile   # py-spy at 250 Hz

prints each pair and the median of paired ratios of time to ready (on / off).
The probe must be installed for vLLM to load it (``pip install -e .``; or put a
dist-info with its entry point on PYTHONPATH). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.registry import load_registry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="on/off pairs. Default: 3")
    parser.add_argument("--what", choices=("probe", "profile"), default="probe", help="what to switch. Default: probe")
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--optimization", default="baseline")
    parser.add_argument("--out", type=Path, default=None, help="also write the pairs as JSON here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="coldstart-probe-overhead-"))
    base = Settings(registry_dir=REPO / "benchmarks", results_dir=workdir / "results", workdir=workdir,
                    repo_dir=REPO, warm_requests=0, probe=args.what == "profile")
    runners = {on: ColdStartRunner(dataclasses.replace(base, **{args.what: on}), load_registry(base.registry_dir))
               for on in (False, True)}
    case = Case(args.model, args.optimization)
    rows = []
    for i in range(args.pairs):
        pair: dict[str, float | int] = {}
        for on in ((True, False) if i % 2 == 0 else (False, True)):
            result = runners[on].run(case)
            if not result.ok or result.total_ready_s is None:
                print(f"pair {i + 1}: {args.what} {'on' if on else 'off'} failed: {result.error}", flush=True)
                return 2
            pair["on" if on else "off"] = result.total_ready_s
            if on and args.what == "probe":
                pair["events"] = result.probe.get("events", 0)
            print(f"pair {i + 1}: {args.what} {'on ' if on else 'off'} ready after {result.total_ready_s:7.2f} s",
                  flush=True)
        rows.append(pair)
    if args.what == "probe" and not any(r.get("events") for r in rows):
        print("the probe recorded no events: is the vllm.general_plugins entry point installed?", flush=True)
        return 2
    ratios = [r["on"] / r["off"] for r in rows]
    on = [r["on"] for r in rows]
    off = [r["off"] for r in rows]
    print(f"\n{args.what} off median {statistics.median(off):.2f} s  ({', '.join(f'{v:.2f}' for v in off)})")
    print(f"{args.what} on  median {statistics.median(on):.2f} s  ({', '.join(f'{v:.2f}' for v in on)})")
    print(f"median of paired ratios (on / off): {statistics.median(ratios):.3f}"
          + ("  (target <= 1.01)" if args.what == "probe" else ""))
    if args.out:
        args.out.write_text(json.dumps({"what": args.what, "pairs": rows, "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
