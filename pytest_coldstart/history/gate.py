"""The history and the PR gate from the command line and from a pytest session.

``coldstart compare BASE HEAD``: each side is a results directory (the
plugin's ``--coldstart-results``) or a commit recorded in the asv results.
``coldstart record`` adds results directories to the asv history;
``coldstart publish`` runs ``asv publish`` on the commits git knows.

Exit codes everywhere: 0 ok, 1 regression, 2 unusable input.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.history import asv_store as asv_export
from pytest_coldstart.history import commits
from pytest_coldstart.model.budgets import Budgets, load_budgets
from pytest_coldstart.history.compare import CompareConfig, Comparison, compare, load_config, unusable
from pytest_coldstart.report.compare import append_step_summary, render_markdown, render_text, write_markdown
from pytest_coldstart.model.errors import ColdstartError, ConfigError
from pytest_coldstart.model.result import RunResult, load_results
from pytest_coldstart.history.samples import SampleSet, from_results_dir, from_runs, is_results_dir

DEFAULT_ASV_RESULTS = Path("results")
DEFAULT_COMPARE_CONFIG = Path("benchmarks/compare.toml")
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")


@dataclass(frozen=True)
class HistorySettings:
    """The plugin's history options as plain values (paths already absolute)."""

    repo_dir: Path
    asv_dir: Path | None = None
    commit: str = "HEAD"
    machine: str | None = None
    compare_to: str | None = None
    compare_config: Path | None = None

    @classmethod
    def from_options(cls, root: Path, registry_dir: Path, *, asv: str, commit: str, machine: str,
                     compare_to: str) -> HistorySettings:
        """Option strings -> settings; paths relative to the rootdir, a REF that is no directory kept as is."""
        ref = compare_to or None
        if ref and (root / ref).is_dir():
            ref = str(root / ref)
        return cls(repo_dir=root, asv_dir=root / asv if asv else None, commit=commit or "HEAD",
                   machine=machine or None, compare_to=ref, compare_config=registry_dir / "compare.toml")

    @property
    def asv_lookup_dir(self) -> Path:
        """Where ``--coldstart-compare-to COMMIT`` looks: --coldstart-asv, else ./results."""
        return self.asv_dir or self.repo_dir / DEFAULT_ASV_RESULTS


def _pick_machine(asv_dir: Path, prefixes: list[str], machine: str | None) -> str:
    known = asv_export.machines(asv_dir)
    if machine:
        if machine not in known:
            raise ConfigError(f"no machine {machine!r} in {asv_dir}; machines with results: "
                              f"{', '.join(known) or 'none'}")
        return machine
    having = [m for m in known if all(any(c.startswith(p[:8]) or p.startswith(c)
                                          for c in asv_export.commits_with_results(asv_dir, m)) for p in prefixes)]
    if len(having) == 1:
        return having[0]
    if not having:
        raise ConfigError(f"no machine in {asv_dir} has results for {' and '.join(prefixes)} "
                          f"(machines: {', '.join(known) or 'none'}); record them first")
    raise ConfigError(f"results for {' and '.join(prefixes)} exist on several machines ({', '.join(having)}); "
                      "pass --machine NAME")


def commit_hash(repo: Path, ref: str) -> str:
    """A git ref -> its full hash; a bare hex prefix git does not know is kept as is."""
    try:
        return commits.resolve(repo, ref).hash
    except ConfigError:
        if _HEX.fullmatch(ref):
            return ref.lower()
        raise


def load_side(ref: str, *, repo: Path, asv_dir: Path, machine: str | None, other: str | None = None) -> SampleSet:
    """*ref* as a sample set: a results directory, or a commit in the asv results.

    :param other: the other side's ref when it too is a commit, so the machine
        is chosen among those that have both.
    """
    path = Path(ref)
    if path.is_dir():
        if is_results_dir(path):
            return from_results_dir(path)
        raise ConfigError(f"{path} is a directory without runs/: not a results directory "
                          "(pass the --coldstart-results directory of a benchmark run)")
    if "/" in ref and not _HEX.fullmatch(ref) and not path.exists():
        raise ConfigError(f"no such results directory: {ref} (pass the --coldstart-results directory of a run, "
                          "or a commit recorded in asv)")
    if not asv_dir.is_dir():
        raise ConfigError(f"{ref!r} is not a results directory, and there are no asv results at {asv_dir} to look "
                          "it up as a commit (pass --asv-results DIR)")
    full = commit_hash(repo, ref)
    wanted = [full] + ([commit_hash(repo, other)] if other and not Path(other).is_dir() else [])
    return asv_export.load_commit(asv_dir, full, _pick_machine(asv_dir, wanted, machine))


def run_compare(base: str | SampleSet, head: str | SampleSet, *, repo: Path, asv_dir: Path,
                machine: str | None = None, config: CompareConfig | None = None, budgets: Budgets | None = None,
                allow_machine_mismatch: bool = False, only_common: bool = False) -> Comparison:
    """Load both sides and compare; unreadable input becomes an exit-2 comparison, never an exception."""
    given = (base, head)
    labels = [s if isinstance(s, str) else s.label for s in given]
    try:
        sides = [s if isinstance(s, SampleSet) else
                 load_side(s, repo=repo, asv_dir=asv_dir, machine=machine,
                           other=given[1 - i] if isinstance(given[1 - i], str) else None)
                 for i, s in enumerate(given)]
    except ColdstartError as exc:
        return unusable(labels[0], labels[1], str(exc))
    return compare(sides[0], sides[1], config, budgets, allow_machine_mismatch=allow_machine_mismatch,
                   only_common=only_common)


def compare_session(results: list[RunResult], settings: HistorySettings, budgets: Budgets | None,
                    base: SampleSet) -> Comparison:
    """``--coldstart-compare-to``: this session's runs (head) against *base* (from ``load_session_base``)."""
    try:
        head = from_runs(results, "this session")
        config = load_config(settings.compare_config)
    except ColdstartError as exc:
        return unusable(base.label, "this session", str(exc))
    # The session decides which cases it runs (--model/--optimization): cases of the base it did not
    # run are left out with a note, not treated as partial input.
    return compare(base, head, config, budgets, only_common=True)


def load_session_base(settings: HistorySettings) -> SampleSet:
    """Check ``--coldstart-compare-to`` before any cold start: a bad REF fails in seconds, not after an hour.

    A commit is looked up on ``--coldstart-machine``, or on the one machine
    that has results for it; the hardware check happens in ``compare``.
    """
    assert settings.compare_to is not None
    load_config(settings.compare_config)
    return load_side(settings.compare_to, repo=settings.repo_dir, asv_dir=settings.asv_lookup_dir,
                     machine=settings.machine)


def record_session(results: list[RunResult], settings: HistorySettings) -> asv_export.RecordOutcome:
    """``--coldstart-asv``: add this session's runs to the asv history at the chosen commit."""
    assert settings.asv_dir is not None
    commit = commits.resolve(settings.repo_dir, settings.commit)
    return asv_export.record(results, settings.asv_dir, commit, machine=settings.machine)


def _compare_cmd(args: argparse.Namespace) -> int:
    repo = Path(args.repo)
    try:
        config = load_config(Path(args.config) if args.config else None)
        config = _override(config, args)
        budgets = load_budgets(Path(args.budgets)) if args.budgets else None
    except ColdstartError as exc:
        comparison = unusable(args.base, args.head, str(exc))
    else:
        comparison = run_compare(args.base, args.head, repo=repo, asv_dir=Path(args.asv_results),
                                 machine=args.machine, config=config, budgets=budgets,
                                 allow_machine_mismatch=args.allow_machine_mismatch, only_common=args.only_common)
    print(render_text(comparison))
    markdown = render_markdown(comparison)
    if args.markdown:
        write_markdown(Path(args.markdown), markdown)
    summary = append_step_summary(markdown)
    if summary:
        print(f"appended to $GITHUB_STEP_SUMMARY ({summary})")
    return comparison.exit_code


def _override(config: CompareConfig, args: argparse.Namespace) -> CompareConfig:
    from dataclasses import replace

    from pytest_coldstart.history.compare import Threshold

    if args.threshold is not None or args.floor is not None:
        default = Threshold(config.default.rel if args.threshold is None else args.threshold,
                            config.default.floor_s if args.floor is None else args.floor)
        config = replace(config, default=default, metrics={}, source=f"{config.source} + command-line defaults")
    if args.alpha is not None:
        config = replace(config, alpha=args.alpha)
    if args.min_samples is not None:
        config = replace(config, min_samples=args.min_samples)
    return config


def _record_cmd(args: argparse.Namespace) -> int:
    runs: list[RunResult] = []
    for directory in args.results:
        found = load_results(Path(directory))
        if not found:
            raise ConfigError(f"{directory}: no runs under {Path(directory) / 'runs'}")
        runs.extend(found)
    commit = commits.resolve(Path(args.repo), args.commit)
    outcome = asv_export.record(runs, Path(args.asv_results), commit, machine=args.machine)
    print(f"recorded {outcome.added_runs} run(s) ({outcome.skipped_runs} already recorded) for commit "
          f"{commit.short} on machine {outcome.machine}: {outcome.path}")
    return 0


def _publish_cmd(args: argparse.Namespace) -> int:
    vendor = Path(args.vendor_dir) if args.self_contained else None
    site = publish(Path(args.config), html_dir=Path(args.html_dir) if args.html_dir else None, vendor_dir=vendor,
                   results_dir=Path(args.results_dir) if args.results_dir else None)
    print(f"site written to {site}; serve it with `asv preview` or any static web server")
    return 0


def publish(config_path: Path, html_dir: Path | None = None, vendor_dir: Path | None = None,
            results_dir: Path | None = None) -> Path:
    """``asv publish`` for the commits git knows, with every local sweep branch included.

    Plain ``asv publish`` fails on a result whose commit git cannot find
    (``KeyError`` in ``get_revisions``, asv 0.6.6) and on a configured branch
    that does not exist; results of PR commits and unpushed sweeps hit both.
    """
    try:
        from asv.commands.publish import Publish
        from asv.config import Config
        from asv.util import UserError
    except ImportError:
        raise ConfigError("asv is not installed; pip install 'pytest-coldstart[asv]'") from None
    try:
        conf: Any = Config.load(str(config_path))
    except UserError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    root = config_path.resolve().parent
    for attr in ("results_dir", "html_dir", "repo"):
        value = Path(getattr(conf, attr))
        setattr(conf, attr, str(value if value.is_absolute() else root / value))
    if html_dir is not None:
        conf.html_dir = str(html_dir.resolve())
    if results_dir is not None:
        conf.results_dir = str(results_dir.resolve())
    repo = Path(conf.repo)
    results_dir = Path(conf.results_dir)
    if not (results_dir / "benchmarks.json").is_file():
        raise ConfigError(f"no asv history in {results_dir} (benchmarks.json missing); record results first: "
                          "pytest benchmarks -m coldstart --coldstart-asv results")
    conf.branches = [b for b in conf.branches if commits.is_known(repo, b)] + \
        [b for b in _sweep_branches(repo) if b not in conf.branches]
    if not conf.branches:
        raise ConfigError(f"none of the branches in {config_path} exist in {repo}")
    known, unknown = set(), set()
    for machine in asv_export.machines(results_dir):
        for path in (results_dir / machine).glob("*.json"):
            if path.name == "machine.json":
                continue
            full = _commit_of(path)
            (known if full and commits.is_known(repo, full) else unknown).add(full or path.name)
    if unknown:
        print(f"coldstart publish: skipping results of {len(unknown)} commit(s) git does not know: "
              f"{', '.join(sorted(u[:8] for u in unknown))} (fetch them to include them)", file=sys.stderr)
    if not known:
        raise ConfigError(f"no results in {results_dir} belong to commits in {repo}")
    Publish.run(conf, range_spec=sorted(known), pull=False)
    if vendor_dir is not None:
        from pytest_coldstart.history.asv_site import fetch_vendor, localize

        localize(Path(conf.html_dir), fetch_vendor(vendor_dir))
    return Path(conf.html_dir)


def _commit_of(path: Path) -> str | None:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("commit_hash")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _sweep_branches(repo: Path) -> list[str]:
    try:
        out = commits._git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/coldstart-sweep*")
    except ConfigError:
        return []
    return [line for line in out.splitlines() if line]


def add_commands(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare two sets of cold starts; exit 1 on a regression",
                       description="BASE and HEAD are each a results directory (--coldstart-results of a benchmark "
                                   "run) or a commit recorded in the asv results. For every model x optimization x "
                                   "launcher and phase: medians, ratio and a verdict (regressed, improved, "
                                   "unchanged, not comparable, missing). Exit 0 ok, 1 regression, 2 unusable input.")
    p.add_argument("base", metavar="BASE")
    p.add_argument("head", metavar="HEAD")
    p.add_argument("--asv-results", default=str(DEFAULT_ASV_RESULTS), metavar="DIR",
                   help="asv results directory for commit lookups (default: results)")
    p.add_argument("--machine", help="asv machine name, when results for the commits exist on several")
    p.add_argument("--repo", default=".", help="git repository for resolving refs (default: .)")
    p.add_argument("--config", default=str(DEFAULT_COMPARE_CONFIG), metavar="TOML",
                   help="thresholds per metric (default: benchmarks/compare.toml; built-in defaults if missing)")
    p.add_argument("--budgets", default="benchmarks/budgets.toml", help="budgets to report breaches against "
                   "('' for none; default: benchmarks/budgets.toml)")
    p.add_argument("--threshold", type=float, metavar="FRACTION", help="relative threshold for every metric "
                   "(0.1 = 10 %%), replacing the config's")
    p.add_argument("--floor", type=float, metavar="SECONDS", help="absolute floor for every metric, in seconds")
    p.add_argument("--alpha", type=float, help="significance level of the Mann-Whitney U test")
    p.add_argument("--min-samples", type=int, help="starts per side needed before the test is used")
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
    p.add_argument("--asv-results", default=str(DEFAULT_ASV_RESULTS), metavar="DIR", help="default: results")
    p.add_argument("--commit", default="HEAD", help="commit to record against (default: HEAD)")
    p.add_argument("--machine", help="asv machine name (default: derived from the hardware)")
    p.add_argument("--repo", default=".", help="git repository (default: .)")
    p.set_defaults(func=_record_cmd)

    p = sub.add_parser("publish", help="build the asv site from the history",
                       description="asv publish, restricted to commits git knows, with local coldstart-sweep* "
                                   "branches added so a version sweep shows on the site.")
    p.add_argument("--config", default="asv.conf.json", help="default: asv.conf.json")
    p.add_argument("--html-dir", help="output directory (default: html_dir of the config)")
    p.add_argument("--results-dir", help="asv results to publish (default: results_dir of the config)")
    p.add_argument("--self-contained", action="store_true",
                   help="serve jQuery, flot and bootstrap from the site instead of CDNs (for viewing offline; "
                   "fetched once with npm into --vendor-dir)")
    p.add_argument("--vendor-dir", default=".coldstart/asv-vendor", help="default: .coldstart/asv-vendor")
    p.set_defaults(func=_publish_cmd)
