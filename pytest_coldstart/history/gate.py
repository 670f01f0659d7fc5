"""The history and the PR gate as calls: what ``coldstart compare/record/publish`` and the plugin run.

``coldstart compare BASE HEAD``: each side is a results directory (the
plugin's ``--coldstart-results``) or a commit recorded in the asv results.
``coldstart record`` adds results directories to the asv history;
``coldstart publish`` runs ``asv publish`` on the commits git knows.

Exit codes everywhere: 0 ok, 1 regression, 2 unusable input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.history import asv_store, commits
from pytest_coldstart.history.asv_publish import DEFAULT_ASV_RESULTS, resolve_results_dir
from pytest_coldstart.history.compare import CompareConfig, Comparison, compare, load_config, unusable
from pytest_coldstart.history.samples import SampleSet, from_results_dir, from_runs, is_results_dir
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.errors import ColdstartError, ConfigError
from pytest_coldstart.model.result import RunResult

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
        """Where ``--coldstart-compare-to COMMIT`` looks: --coldstart-asv, else ./results/asv."""
        return resolve_results_dir(self.asv_dir or self.repo_dir / DEFAULT_ASV_RESULTS)


def _pick_machine(asv_dir: Path, prefixes: list[str], machine: str | None) -> str:
    known = asv_store.machines(asv_dir)
    if machine:
        if machine not in known:
            raise ConfigError(f"no machine {machine!r} in {asv_dir}; machines with results: "
                              f"{', '.join(known) or 'none'}")
        return machine
    having = [m for m in known if all(any(c.startswith(p[:8]) or p.startswith(c)
                                          for c in asv_store.commits_with_results(asv_dir, m)) for p in prefixes)]
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
    asv_dir = resolve_results_dir(asv_dir)
    if not asv_dir.is_dir():
        raise ConfigError(f"{ref!r} is not a results directory, and there are no asv results at {asv_dir} to look "
                          "it up as a commit (pass --asv-results DIR)")
    full = commit_hash(repo, ref)
    wanted = [full] + ([commit_hash(repo, other)] if other and not Path(other).is_dir() else [])
    return asv_store.load_commit(asv_dir, full, _pick_machine(asv_dir, wanted, machine))


def run_compare(base: str | SampleSet, head: str | SampleSet, *, repo: Path, asv_dir: Path,
                machine: str | None = None, config: CompareConfig | None = None, budgets: Budgets | None = None,
                allow_machine_mismatch: bool = False, only_common: bool = False) -> Comparison:
    """Load both sides and compare; unreadable input becomes an exit-2 comparison, never an exception."""
    given = (base, head)
    labels = [s if isinstance(s, str) else s.label for s in given]
    try:
        sides = []
        for i, side in enumerate(given):
            other = given[1 - i]
            sides.append(side if isinstance(side, SampleSet) else
                         load_side(side, repo=repo, asv_dir=asv_dir, machine=machine,
                                   other=other if isinstance(other, str) else None))
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


def check_record_target(settings: HistorySettings) -> None:
    """``--coldstart-asv``: asv importable, the commit known, the directory creatable (before any start)."""
    assert settings.asv_dir is not None
    asv_store.require_asv()
    commits.resolve(settings.repo_dir, settings.commit)
    settings.asv_dir.mkdir(parents=True, exist_ok=True)


def record_session(results: list[RunResult], settings: HistorySettings) -> asv_store.RecordOutcome:
    """``--coldstart-asv``: add this session's runs to the asv history at the chosen commit."""
    assert settings.asv_dir is not None
    commit = commits.resolve(settings.repo_dir, settings.commit)
    return asv_store.record(results, resolve_results_dir(settings.asv_dir), commit, machine=settings.machine)
