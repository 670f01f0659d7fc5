"""``coldstart``: the command-line side of pytest-coldstart.

Exit codes: 0 ok, 2 unusable input (missing file, bad schema, bad arguments).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_coldstart.model.errors import ColdstartError

if TYPE_CHECKING:
    from pytest_coldstart.logs.timeline import Timeline

#: Modules that add subcommands: each defines ``add_commands(subparsers)`` and
#: sets ``func`` (args -> exit code) on its parsers.
COMMAND_MODULES: tuple[str, ...] = (
    "pytest_coldstart.report.html",  # report
    "pytest_coldstart.report.anchors",  # anchors
    "pytest_coldstart.measure.floors",  # floor
    "pytest_coldstart.history.gate",  # compare, record, publish
    "pytest_coldstart.history.sweep",  # sweep
    "pytest_coldstart.optimize.s3source",  # s3 upload-model, s3 shard
    "pytest_coldstart.optimize.compile_cache",  # cache push, cache pull
    "pytest_coldstart.report.ray",  # ray-timeline
)

DESCRIPTION = """\
Measure and read LLM server cold starts.

The benchmarks themselves run under pytest:
  pytest benchmarks -m coldstart --model tiny-llama        # CPU lane, tiny generated model
  pytest benchmarks -m coldstart --model llama-3-8b        # on an H100 runner
This command prepares inputs and reads outputs.
"""


def _make_tiny_model(args: argparse.Namespace) -> int:
    from pytest_coldstart.optimize.tinymodel import checkpoint_digest, make_tiny_model

    path = make_tiny_model(Path(args.dir))
    print(f"wrote tiny Llama checkpoint to {path} (sha256 {checkpoint_digest(path)[:16]})")
    return 0


def read_log(path: Path, command: str) -> str | None:
    """The text of a saved log, or None after telling the user why not (exit 2)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"coldstart {command}: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


def print_timeline(timeline: Timeline, path: Path, as_json: bool, title: str) -> None:
    """``--json``: the timeline as JSON; otherwise the phase table."""
    from pytest_coldstart.report.tables import render_timeline

    if as_json:
        json.dump({"log": str(path), **timeline.to_dict()}, sys.stdout, indent=2)
        print()
    else:
        print(render_timeline(timeline, title=title))


def _timeline(args: argparse.Namespace) -> int:
    from pytest_coldstart.logs.timeline import timeline_from_log

    path = Path(args.logfile)
    text = read_log(path, "timeline")
    if text is None:
        return 2
    print_timeline(timeline_from_log(text), path, args.json, f"{path.name} (times from the log's own 1 s timestamps)")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from pytest_coldstart.model.budgets import load_budgets
    from pytest_coldstart.report.tables import render_summary
    from pytest_coldstart.model.result import load_results

    results = load_results(Path(args.results))
    if not results:
        print(f"coldstart summary: no runs under {Path(args.results) / 'runs'}; run the benchmarks first",
              file=sys.stderr)
        return 2
    budgets = load_budgets(Path(args.budgets)) if args.budgets else None
    groups: dict[tuple[str, str, str], list] = {}
    for result in results:
        groups.setdefault(result.key, []).append(result)
    for runs in groups.values():
        print(render_summary(runs, budgets))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldstart", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("make-tiny-model", help="generate the tiny Llama checkpoint the CPU lane serves",
                       description="Write a deterministic 2-layer Llama (safetensors + locally trained BPE "
                                   "tokenizer) to DIR. Nothing is downloaded; the same bytes every time.")
    p.add_argument("dir", metavar="DIR", help="output directory (replaced atomically if it exists)")
    p.set_defaults(func=_make_tiny_model)

    p = sub.add_parser("timeline", help="split a saved vLLM / Ray Serve LLM log into startup phases",
                       description="Parse a saved log (plain vLLM, or Ray Serve LLM with actor prefixes, ANSI "
                                   "colour and '[repeated Nx across cluster]') on its own timestamps. Values "
                                   "vLLM reports itself (model load, torch.compile, ...) are reduced by max "
                                   "over tensor-parallel ranks.")
    p.add_argument("logfile", metavar="LOGFILE")
    p.add_argument("--json", action="store_true", help="print JSON: phases list and reported object")
    p.set_defaults(func=_timeline)

    p = sub.add_parser("summary", help="phase tables (medians) from saved results",
                       description="Read results/runs/*.json and print one phase table per "
                                   "model x optimization x launcher.")
    p.add_argument("results", nargs="?", default="results", metavar="RESULTS_DIR", help="default: results")
    p.add_argument("--budgets", default="benchmarks/budgets.toml", help="budgets file to compare against "
                   "(default: benchmarks/budgets.toml; '' for none)")
    p.set_defaults(func=_summary)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ColdstartError as exc:
        print(f"coldstart {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
