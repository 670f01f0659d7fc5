"""``coldstart check-vllm | gpu-check``: what a vLLM source tree offers the harness, and a GPU host's facts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_coldstart.model.flags import checked


def _render(report: dict[str, Any]) -> str:
    lines = [f"vLLM {report['vllm_version'] or '(version unknown)'} at {report['source']}", "",
             "log wordings the grammar relies on:"]
    for marker in report["markers"]:
        lines.append(f"  {marker['status']:<12} {marker['marker']:<20} ({marker['role']})")
    elsewhere = report.get("markers_not_from_vllm") or {}
    if elsewhere:
        lines.append(f"  not vLLM's lines, not looked for: {', '.join(elsewhere)}")
    lines += ["", "probe targets (module:Class.method):"]
    for target in report["probe_targets"]:
        lines.append(f"  {target['status']:<14} {target['target']}  [{target['step']}]")
    s = report["summary"]
    lines += ["", f"fragments found: {s['fragments_found']}/{s['fragments_total']}; probe targets present: "
                  f"{s['targets_present']}/{s['targets_total']}"]
    if s["legacy_fragments_gone"]:
        lines.append(f"older wordings gone (expected, still read in old logs): {len(s['legacy_fragments_gone'])}")
    if s["markers_missing"]:
        lines.append(f"MISSING required markers: {', '.join(s['markers_missing'])} -> the grammar cannot see these "
                     "phases in this vLLM; add the new wording to its marker in logs/grammar.py before bumping the pin")
    if s["steps_without_target"]:
        lines.append(f"probe steps with no target left: {', '.join(s['steps_without_target'])} -> add the new "
                     "names to logs/vllm_plugin.py TARGETS")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)


def _check_vllm(args: argparse.Namespace) -> int:
    from pytest_coldstart.logs.vllm_source import SourceTree, SourceTreeError, check_tree, installed_vllm_dir
    from pytest_coldstart.model.files import atomic_write_json

    if args.source:
        path = Path(args.source)
    else:
        found = installed_vllm_dir()
        if found is None:
            print("coldstart check-vllm: no vLLM installed in this Python; pass --source DIR (a vLLM checkout, "
                  "an unpacked sdist or wheel)", file=sys.stderr)
            return 2
        path = found
    try:
        tree = SourceTree.locate(path)
    except SourceTreeError as exc:
        print(f"coldstart check-vllm: {exc}", file=sys.stderr)
        return 2
    report = check_tree(tree).to_dict()
    if args.out:
        atomic_write_json(Path(args.out), report)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(_render(report))
    if report["verdict"] != "ok":
        print("coldstart check-vllm: this vLLM lacks wordings or probe targets the harness relies on (exit 2: the "
              "phases it would time cannot be decided); see docs/how-to/upgrading-vllm.md", file=sys.stderr)
        return 2
    return 0


def _gpu_check(args: argparse.Namespace) -> int:
    from pytest_coldstart.measure.gpu_check import run_gpu_check

    if not 0 < args.h2d_gib <= 64:
        print("coldstart gpu-check: --h2d-gib must be in (0, 64] (GiB of pinned memory the probe copies)",
              file=sys.stderr)
        return 2
    return run_gpu_check(Path(args.out), workdir=Path(args.workdir), h2d_gib=args.h2d_gib,
                         vllm_source=Path(args.vllm_source) if args.vllm_source else None)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("check-vllm", help="which log wordings and probe targets a vLLM source tree has",
                       description="Read a vLLM source tree statically (no import, no GPU) and report which log "
                                   "wordings the phase grammar relies on and which probe targets "
                                   "(module:Class.method) exist in that version, and which are gone. Exit 0: "
                                   "all required ones present; 2: some missing, or no tree to read.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--source", metavar="DIR", help="a vLLM checkout, unpacked sdist/wheel, or the vllm "
                                                       "package directory")
    where.add_argument("--installed", action="store_true", help="the vLLM installed in this Python (default)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE (atomically)")
    p.set_defaults(func=_check_vllm)

    p = sub.add_parser("gpu-check", help="one JSON report of this GPU host: NVML, host->GPU floor, probe hooks",
                       description="For a machine with a GPU (make gpu-check): NVML preflight, the host->GPU floor "
                                   "probe, the environment with GPU facts, check-vllm of the installed vLLM (when "
                                   "there is one) and the probe's hooks. Needs torch with CUDA and this package. "
                                   "Exit 0: report written; 2: no GPU (the report says why) or a check failed.")
    p.add_argument("--out", default="results/gpu-check.json", metavar="FILE", help="default: %(default)s")
    p.add_argument("--workdir", default=".coldstart", metavar="DIR", help="scratch directory; default: %(default)s")
    p.add_argument("--h2d-gib", type=checked("positive", "2"), default=2.0, metavar="GIB",
                   help="pinned buffer size of the host->GPU probe; default: %(default)s")
    p.add_argument("--vllm-source", metavar="DIR", help="check this vLLM tree instead of the installed one")
    p.set_defaults(func=_gpu_check)
