"""``coldstart make-tiny-model | timeline | ray-timeline | summary``: inputs made, logs and results read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_coldstart.logs.timeline import Timeline
from pytest_coldstart.model.schema import SCHEMAS


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


def _make_tiny_model(args: argparse.Namespace) -> int:
    from pytest_coldstart.optimize.tinymodel import checkpoint_digest, make_tiny_model

    path = make_tiny_model(Path(args.dir))
    print(f"wrote tiny Llama checkpoint to {path} (sha256 {checkpoint_digest(path)[:16]})")
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from pytest_coldstart.logs.timeline import timeline_from_log

    path = Path(args.logfile)
    text = read_log(path, "timeline")
    if text is None:
        return 2
    timeline = timeline_from_log(text)
    print_timeline(timeline, path, args.json, f"{path.name} (times from the log's own 1 s timestamps)")
    if not any(p.duration_s is not None for p in timeline.phases) and timeline.total_ready_s is None:
        print(f"coldstart timeline: {path} has no vLLM startup lines (no phase observed); is it a vLLM server log?",
              file=sys.stderr)
        return 2
    return 0


def _ray_timeline(args: argparse.Namespace) -> int:
    from pytest_coldstart.logs.ray import looks_like_ray_log, ray_timeline_from_log

    path = Path(args.logfile)
    text = read_log(path, "ray-timeline")
    if text is None:
        return 2
    if not looks_like_ray_log(text):
        print(f"coldstart ray-timeline: {path} has no Ray Serve lines ((ServeReplica:...) prefixes or "
              "[coldstart-ray] events); for a plain vLLM log use `coldstart timeline`", file=sys.stderr)
        return 2
    timeline = ray_timeline_from_log(text)
    print_timeline(timeline, path, args.json, f"{path.name} (Ray Serve LLM; t = 0 at the first request "
                                              "when the log says when it was sent)")
    if not args.json and timeline.total_ready_s is None:
        print("total (request sent -> first token): not observed; only logs saved by --launcher ray-serve "
              "record when the first request was sent")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from pytest_coldstart.measure.config import budget_files, load_budget_layers
    from pytest_coldstart.model.case import group_by_case
    from pytest_coldstart.model.result import load_results
    from pytest_coldstart.model.scaleout import SCALEOUT_DIR, load_scaleouts
    from pytest_coldstart.report.tables import render_scaleout_summary, render_summary

    results = load_results(Path(args.results))
    scaleouts = load_scaleouts(Path(args.results)) if (Path(args.results) / SCALEOUT_DIR).is_dir() else []
    if not results and not scaleouts:
        print(f"coldstart summary: no runs under {Path(args.results) / 'runs'} (nor scale-out runs under "
              f"{Path(args.results) / SCALEOUT_DIR}); run the benchmarks first", file=sys.stderr)
        return 2
    if args.json and scaleouts:
        print("coldstart summary --json: scale-out runs are not part of the JSON summary; read "
              f"{Path(args.results) / SCALEOUT_DIR}/*.json", file=sys.stderr)
    files = budget_files(args.budgets, Path("benchmarks/budgets.toml"))
    budgets = load_budget_layers(files) if files else None
    print(f"budgets in force: {budgets.path if budgets else 'none'}", file=sys.stderr)
    if args.json:
        from pytest_coldstart.report.export import summary_record

        json.dump(summary_record(results, budgets), sys.stdout, indent=2)
        print()
        return 0
    for runs in group_by_case(results).values():
        print(render_summary(runs, budgets))
        print()
    for scaleout in scaleouts:
        print(render_scaleout_summary(scaleout))
        print()
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(SCHEMAS[args.name](), indent=2))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("make-tiny-model", help="generate the tiny Llama checkpoint the CPU lane serves",
                       description="Write a deterministic 2-layer Llama (safetensors + locally trained BPE "
                                   "tokenizer) to DIR. Nothing is downloaded; the same bytes every time.")
    p.add_argument("dir", metavar="DIR", help="output directory (replaced atomically if it exists)")
    p.set_defaults(func=_make_tiny_model)

    for name, func, help_text, description in (
            ("timeline", _timeline, "split a saved vLLM / Ray Serve LLM log into startup phases",
             "Parse a saved log (plain vLLM, or Ray Serve LLM with actor prefixes, ANSI colour and '[repeated Nx "
             "across cluster]') on its own timestamps. Values vLLM reports itself (model load, torch.compile, ...) "
             "are reduced by max over tensor-parallel ranks."),
            ("ray-timeline", _ray_timeline, "split a saved Ray Serve LLM log into scale-from-zero phases",
             "Parse a Ray Serve LLM driver log (saved by --launcher ray-serve, or a console capture with "
             "(ServeReplica:...) prefixes) into Ray phases (scheduling, replica init) and the vLLM engine phases "
             "inside the replica. Times come from the log's own timestamps.")):
        p = sub.add_parser(name, help=help_text, description=description)
        p.add_argument("logfile", metavar="LOGFILE")
        p.add_argument("--json", action="store_true", help="print JSON: phases list and reported object")
        p.set_defaults(func=func)

    p = sub.add_parser("summary", help="phase tables (medians) from saved results",
                       description="Read results/runs/*.json and print one phase table per "
                                   "model x optimization x launcher, then one step table per scale-out run "
                                   "(results/scaleout/*.json).")
    p.add_argument("results", nargs="?", default="results", metavar="RESULTS_DIR", help="default: results")
    p.add_argument("--budgets", default=None, help="budgets file to compare against, used alone; it must exist "
                   "(default: the packaged budgets + benchmarks/budgets.toml when present; '' for none)")
    p.add_argument("--json", action="store_true", help="print JSON: per case, starts, medians and samples in "
                   "seconds, budgets")
    p.set_defaults(func=_summary)

    p = sub.add_parser("schema", help="print the JSON Schema of a results file",
                       description="Print the JSON Schema (draft 2020-12) of results/runs/*.json as this version "
                                   "writes and reads them: every field, its type and unit. Validate a file with "
                                   "any JSON Schema tool, e.g. `coldstart schema result > result.schema.json; "
                                   "check-jsonschema --schemafile result.schema.json results/runs/*.json`.")
    p.add_argument("name", nargs="?", default="result", choices=sorted(SCHEMAS), help="which schema (default: result)")
    p.set_defaults(func=_schema)
