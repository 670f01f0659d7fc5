"""What does looking inside cost? The in-vLLM probe (and py-spy) on vs off, paired and interleaved.

Both sides are the same ``ColdStartRunner`` start of one case (fresh, empty
caches every time); the only difference is ``Settings.probe`` (the probe's
``COLDSTART_EVENTS_FILE``) or, with ``--what profile``, ``Settings.profile``
(py-spy sampling every server process). Pairs alternate their order, so drift
on the machine hits both alike. The warm-up requests are off (they follow
/health and do not change time to ready).

    .venv/bin/python benchmarks/probe_overhead.py --pairs 3                  # probe: target <= 1.01
    .venv/bin/python benchmarks/probe_overhead.py --pairs 3 --what profile   # py-spy at 250 Hz
    .venv/bin/python benchmarks/probe_overhead.py --pairs 8 --what imports   # no server: plugin load + imports
    .venv/bin/python benchmarks/probe_overhead.py --pairs 3 --what own       # CPU time in the probe's own code

``--what imports`` isolates what the probe adds to a process, without a server's
noise: a fresh interpreter loads vLLM's plugins (the probe registers its import
hook) and imports every module the probe wraps, with and without
``COLDSTART_EVENTS_FILE``. ``--what own`` runs that under cProfile with the probe
on and sums the time spent in the probe's own functions (its import hook,
patching, event writes): a bound that machine noise cannot blur.

prints each pair and the median of paired ratios of time to ready (on / off).
The probe must be installed for vLLM to load it (``pip install -e .``; or put a
dist-info with its entry point on PYTHONPATH). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
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
    parser.add_argument("--what", choices=("probe", "profile", "imports", "own"), default="probe",
                        help="what to switch. Default: probe")
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--optimization", default="baseline")
    parser.add_argument("--out", type=Path, default=None, help="also write the pairs as JSON here")
    args = parser.parse_args()
    if args.what == "imports":
        return _imports(args)
    if args.what == "own":
        return _own(args)
    workdir = Path(tempfile.mkdtemp(prefix="coldstart-probe-overhead-"))
    base = Settings(registry_dir=REPO / "benchmarks", results_dir=workdir / "results", workdir=workdir,
                    repo_dir=REPO, warm_requests=0, probe=args.what == "profile")
    runners = {on: ColdStartRunner(dataclasses.replace(base, probe=on) if args.what == "probe" else
                                   dataclasses.replace(base, profile=on), load_registry(base.registry_dir))
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
                pair["events"] = result.probe.events or 0
            print(f"pair {i + 1}: {args.what} {'on ' if on else 'off'} ready after {result.total_ready_s:7.2f} s",
                  flush=True)
        rows.append(pair)
    if args.what == "probe" and not any(r.get("events") for r in rows):
        print("the probe recorded no events: is the vllm.general_plugins entry point installed?", flush=True)
        return 2
    ratios = [r["on"] / r["off"] for r in rows]
    on_s = [r["on"] for r in rows]
    off_s = [r["off"] for r in rows]
    print(f"\n{args.what} off median {statistics.median(off_s):.2f} s  ({', '.join(f'{v:.2f}' for v in off_s)})")
    print(f"{args.what} on  median {statistics.median(on_s):.2f} s  ({', '.join(f'{v:.2f}' for v in on_s)})")
    print(f"median of paired ratios (on / off): {statistics.median(ratios):.3f}"
          + ("  (target <= 1.01)" if args.what == "probe" else ""))
    if args.out:
        args.out.write_text(json.dumps({"what": args.what, "pairs": rows, "ratios": ratios}, indent=2) + "\n")
    return 0


_IMPORTS = """
import sys, time
t0 = time.monotonic()
from vllm.plugins import load_general_plugins
load_general_plugins()
from pytest_coldstart.logs.vllm_plugin import TARGETS
import importlib
for name in dict.fromkeys(m for m, _, _ in TARGETS):
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(time.monotonic() - t0)
"""


_OWN = """
import cProfile, pstats
prof = cProfile.Profile()
prof.enable()
""" + _IMPORTS.replace("print(time.monotonic() - t0)", "") + """
prof.disable()
own = total = 0.0
for (fn, _, func), (_, _, tt, ct, _) in pstats.Stats(prof).stats.items():
    total += tt
    if fn.endswith("vllm_plugin.py"):
        own += tt + (ct - tt if func == "_write" else 0.0)
print(own, total)
"""


def _own(args: argparse.Namespace) -> int:
    events = Path(tempfile.mkdtemp(prefix="coldstart-probe-own-")) / "events.jsonl"
    env = {**os.environ, "COLDSTART_EVENTS_FILE": str(events)}
    rows = []
    for i in range(args.pairs):
        out = subprocess.run([sys.executable, "-c", _OWN], env=env, capture_output=True, text=True, check=True,
                             timeout=600)
        own, total = (float(v) for v in out.stdout.split()[-2:])
        rows.append({"own_s": own, "profiled_s": total})
        print(f"run {i + 1}: probe's own code {own * 1000:.1f} ms of {total:.2f} s ({own / total:.3%})", flush=True)
    if not events.exists():
        print("the probe recorded no events: is the vllm.general_plugins entry point installed?", flush=True)
        return 2
    print(f"\nmedian {statistics.median(r['own_s'] for r in rows) * 1000:.1f} ms per process")
    if args.out:
        args.out.write_text(json.dumps({"what": "own", "runs": rows}, indent=2) + "\n")
    return 0


def _imports(args: argparse.Namespace) -> int:
    events = Path(tempfile.mkdtemp(prefix="coldstart-probe-imports-")) / "events.jsonl"
    rows = []
    for i in range(args.pairs):
        pair: dict[str, float] = {}
        for on in ((True, False) if i % 2 == 0 else (False, True)):
            env = {k: v for k, v in os.environ.items() if k != "COLDSTART_EVENTS_FILE"}
            if on:
                env["COLDSTART_EVENTS_FILE"] = str(events)
            out = subprocess.run([sys.executable, "-c", _IMPORTS], env=env, capture_output=True, text=True,
                                 check=True, timeout=600)
            pair["on" if on else "off"] = float(out.stdout.strip().splitlines()[-1])
            print(f"pair {i + 1}: probe {'on ' if on else 'off'} imports {pair['on' if on else 'off']:6.2f} s",
                  flush=True)
        rows.append(pair)
    if not events.exists():
        print("the probe recorded no events: is the vllm.general_plugins entry point installed?", flush=True)
        return 2
    ratios = [r["on"] / r["off"] for r in rows]
    print(f"\nmedian of paired ratios (on / off), plugin load + imports of the wrapped modules: "
          f"{statistics.median(ratios):.3f}; median difference "
          f"{statistics.median(r['on'] - r['off'] for r in rows):+.3f} s")
    if args.out:
        args.out.write_text(json.dumps({"what": "imports", "pairs": rows, "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
