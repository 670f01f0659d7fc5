"""``coldstart gate run | judge | study``: the sequential PR gate.

``run`` starts interleaved base/head pairs and stops as soon as the gate can answer; ``judge`` replays the
same looks on recorded pairs (the PR workflow's hosted job, with the base's code); ``study`` measures the
gate's error rates by resampling real pairs. Exit codes: 0 no regression, 1 regression, 2 could not decide.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pytest_coldstart.history.compare import load_config
from pytest_coldstart.history.sequential import GateDecision, SequentialDesign, judge_pairs, look_records
from pytest_coldstart.measure.config import budget_files, compare_config_file, load_budget_layers
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import atomic_write_text
from pytest_coldstart.model.flags import checked
from pytest_coldstart.model.result import load_results
from pytest_coldstart.report.compare import append_step_summary, render_markdown, render_text, write_markdown


def _design(args: argparse.Namespace) -> SequentialDesign:
    return SequentialDesign(min_pairs=args.min_pairs, max_pairs=args.max_pairs, alpha=args.alpha,
                            power=args.power)


def _inputs(args: argparse.Namespace) -> tuple[Any, Budgets | None]:
    config = load_config(compare_config_file(Path(args.config) if args.config else None, Path("benchmarks")))
    files = budget_files(args.budgets, Path("benchmarks/budgets.toml"))
    return config, (load_budget_layers(files) if files else None)


def _record(decision: GateDecision, design: SequentialDesign, extra: dict[str, Any]) -> dict[str, Any]:
    from pytest_coldstart.report.export import comparison_record

    return {"state": decision.state, "stop": decision.stop, "pairs": decision.pairs,
            "more_pairs": decision.more_pairs, "exit_code": decision.exit_code,
            "design": {"min_pairs": design.min_pairs, "max_pairs": design.max_pairs, "alpha": design.alpha,
                       "power": design.power, "rho": design.rho},
            **extra, "looks": look_records(decision), "comparison": comparison_record(decision.comparison)}


def _finish(decision: GateDecision, design: SequentialDesign, args: argparse.Namespace,
            extra: dict[str, Any], out: Path | None = None) -> int:
    record = _record(decision, design, extra)
    if out is not None:
        atomic_write_text(out / "gate.json", json.dumps(record, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(render_text(decision.comparison))
    markdown = render_markdown(decision.comparison)
    if args.markdown:
        write_markdown(Path(args.markdown), markdown)
    summary = append_step_summary(markdown)
    if summary and not args.json:
        print(f"appended to $GITHUB_STEP_SUMMARY ({summary})")
    return decision.exit_code


def _run_cmd(args: argparse.Namespace) -> int:
    from pytest_coldstart.history.gate_run import Side, collector, starter
    from pytest_coldstart.history.sequential import run_sequential

    design = _design(args)
    for flag, value in (("--budget-min", args.budget_min), ("--start-timeout", args.start_timeout)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{flag} {value!r}: expected a positive number of "
                              f"{'minutes' if flag == '--budget-min' else 'seconds'}")
    config, budgets = _inputs(args)
    sides = {"base": Side.of("base", Path(args.base)), "head": Side.of("head", Path(args.head))}
    out = Path(args.out or f".coldstart/gate/{time.strftime('%Y%m%dT%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra_args = shlex.split(args.pytest_args or "")

    def say(line: str) -> None:  # with --json, stdout is the JSON alone: the progress goes to stderr
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    say(f"coldstart gate: {design.min_pairs}-{design.max_pairs} interleaved pairs of {args.model}, budget "
        f"{args.budget_min:g} min; run files in {out}/runs-base and runs-head, logs in {out}/logs")
    outcome = run_sequential(starter(sides, out, args.model, extra_args, timeout_s=args.start_timeout, log=say),
                             collector(out), design=design, config=config, budgets=budgets,
                             budget_s=args.budget_min * 60, log=say)
    d = outcome.decision
    say(f"coldstart gate: {d.state.upper()} ({d.stop}) after {d.pairs} pair(s) judged, {outcome.pairs_started} "
        f"started, {outcome.elapsed_s / 60:.1f} min")
    return _finish(d, design, args, {"pairs_started": outcome.pairs_started,
                                     "minutes": round(outcome.elapsed_s / 60, 2),
                                     "pair_seconds": [round(s, 1) for s in outcome.pair_seconds]}, out)


def _judge_cmd(args: argparse.Namespace) -> int:
    design = _design(args)
    config, budgets = _inputs(args)
    sides = []
    for d in (args.base, args.head):
        runs = load_results(Path(d))
        if not runs:
            raise ConfigError(f"{d}: no runs under {Path(d) / 'runs'}; pass the --coldstart-results directory of "
                              "one side (coldstart gate run writes runs-base/ and runs-head/)")
        sides.append(runs)
    decision = judge_pairs(sides[0], sides[1], design=design, config=config, budgets=budgets, final=True,
                           labels=(f"results dir {args.base}", f"results dir {args.head}"))
    return _finish(decision, design, args, {})


def _source(text: str) -> tuple[str, str, Path]:
    kind, sep, rest = text.partition(":")
    name, sep2, path = rest.partition("=")
    if not sep or not sep2 or kind not in ("interleaved", "adjacent") or not name or not path:
        raise argparse.ArgumentTypeError(f"Could not parse value: {text!r}. Expected interleaved:NAME=DIR (a dir "
                                         "with base/ and head/ or baseline/ and slowed/ run dirs, paired in start "
                                         "order) or adjacent:NAME=DIR (same-code starts taken two by two)")
    return kind, name, Path(path)


def _study_cmd(args: argparse.Namespace) -> int:
    from pytest_coldstart.history import gate_study

    design = _design(args)
    config = load_config(compare_config_file(Path(args.config) if args.config else None, Path("benchmarks")))
    sources = {}
    for kind, name, path in args.source:
        if kind == "adjacent":
            sources[name] = gate_study.adjacent(load_results(path))
        else:
            for b, h in (("base", "head"), ("baseline", "slowed")):
                if (path / b / "runs").is_dir() and (path / h / "runs").is_dir():
                    sources[name] = gate_study.interleaved(load_results(path / b), load_results(path / h))
                    break
            else:
                raise ConfigError(f"{path}: expected base/ and head/ (or baseline/ and slowed/) results directories")
    report = gate_study.study(sources, design=design, config=config, sequences=args.sequences,
                              changes=[float(c) for c in args.changes.split(",")], seed=args.seed)
    text = gate_study.render(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
        atomic_write_text(out / "report.md", text + "\n")
        print(f"written: {out / 'report.json'}, {out / 'report.md'}")
    return 0


def _output_flags(p: argparse.ArgumentParser) -> None:
    """What `gate run` and `gate judge` report against and write: budgets, the PR-comment table, JSON."""
    p.add_argument("--budgets", default=None, help="budgets to report breaches against ('' for none)")
    p.add_argument("--markdown", metavar="FILE", help="write the PR-comment table here")
    p.add_argument("--json", action="store_true", help="print the decision as JSON")


def _design_flags(p: argparse.ArgumentParser) -> None:
    d = SequentialDesign()
    p.add_argument("--min-pairs", type=checked("count", "3"), default=d.min_pairs,
                   help=f"first look (default: {d.min_pairs})")
    p.add_argument("--max-pairs", type=checked("count", "20"), default=d.max_pairs,
                   help=f"cap (default: {d.max_pairs})")
    p.add_argument("--alpha", type=checked("alpha", "0.05"), default=d.alpha,
                   help="false-alarm rate spent over the looks, per PR "
                   f"(default: {d.alpha:g}; measured rates in docs/explanation/regressions.md)")
    p.add_argument("--power", type=checked("power", "0.95"), default=d.power,
                   help="how surely +10 %% is not called unchanged "
                   f"(default: {d.power:g})")
    p.add_argument("--config", default=None, metavar="TOML", help="compare thresholds (default: "
                   "benchmarks/compare.toml when present, else the packaged ones)")


def add_commands(sub: Any) -> None:
    gate = sub.add_parser("gate", help="the sequential PR gate: run pairs until it can answer",
                          description="Interleaved base/head cold starts judged after every pair; stops at "
                                      "regressed, at unchanged with enough power, or at the cap/budget (undecided). "
                                      "Exit 0 no regression, 1 regression, 2 could not decide.")
    gsub = gate.add_subparsers(dest="gate_command", required=True, metavar="SUBCOMMAND")

    p = gsub.add_parser("run", help="run interleaved pairs until the gate decides",
                        description="Runs each side's benchmark suite (`pytest benchmarks -m coldstart` in the "
                                    "checkout, with its .venv when it has one) once per start: base, head, base, "
                                    "head, ...; judges after every pair.")
    p.add_argument("--base", required=True, metavar="DIR", help="checkout of the base commit")
    p.add_argument("--head", required=True, metavar="DIR", help="checkout of the head commit")
    _design_flags(p)
    p.add_argument("--budget-min", type=checked("positive", "150"), default=150,
                   help="stop before a pair that would end after this "
                   "many minutes (default: 150)")
    p.add_argument("--model", default="tiny-llama", help="the --model of each start (default: tiny-llama)")
    p.add_argument("--pytest-args", default="", help="more pytest arguments for every start, one string")
    p.add_argument("--start-timeout", type=checked("timeout_s", "3600"), default=3600,
                   help="seconds per start's pytest (default: 3600)")
    p.add_argument("--out", help="where runs-base/, runs-head/, logs/ and gate.json go (default: "
                   ".coldstart/gate/<time>)")
    _output_flags(p)
    p.set_defaults(func=_run_cmd)

    p = gsub.add_parser("judge", help="replay the gate's looks on recorded pairs (exit as the gate)",
                        description="BASE and HEAD are results directories of interleaved starts (coldstart gate "
                                    "run's runs-base and runs-head); start i of each side is a pair.")
    p.add_argument("base", metavar="BASE")
    p.add_argument("head", metavar="HEAD")
    _design_flags(p)
    _output_flags(p)
    p.set_defaults(func=_judge_cmd)

    p = gsub.add_parser("study", help="error rates of the gate, resampling real pairs",
                        description="Resamples real pairs (random order within a pair, a known change injected "
                                    "into every head) and judges each sequence as `gate run` does.")
    p.add_argument("source", nargs="+", type=_source, metavar="KIND:NAME=DIR",
                   help="interleaved:NAME=DIR or adjacent:NAME=DIR")
    _design_flags(p)
    p.add_argument("--sequences", type=checked("count", "1000"), default=1000,
                   help="sequences per source and change (default: 1000)")
    p.add_argument("--changes", default="0,0.10", help="injected changes (default: 0,0.10)")
    p.add_argument("--seed", type=checked("count0", "1"), default=20261205)
    p.add_argument("--out", help="write report.json and report.md here")
    p.set_defaults(func=_study_cmd)
