"""``coldstart publish``: asv's site from the history, in time linear in the commits.

Plain ``asv publish`` fails on a result whose commit git cannot find (``KeyError`` in
``get_revisions``, asv 0.6.6) and on a configured branch that does not exist; results of PR commits
and unpushed sweeps hit both. So the commits git knows are passed to it as the range, and every
local ``coldstart-sweep*`` branch is added.

Where the time goes (benchmarks/history_scale.py, 3,000 commits x 15 cases, cProfile): asv's step
detection (``asv.step_detect.detect_steps``, an L1 Potts fit with a search over its penalty) took
0.25 s per 3,000-point series, about 200 series: most of the CPU, and it grows faster than the
commits. The site's steps now come from the same segmentation ``coldstart changes`` uses
(``history.changes``: ruptures' binary segmentation on log seconds, a step kept only when it is
big and sure enough), handed to asv in its own format (``left, right, median, min, mean abs
deviation`` per segment): the regressions page and ``coldstart changes`` name the same commits.
Series asv's form does not fit (zeros, negative values: ``failed_starts``) keep asv's own
detection. The rest that grew with the commits was this package's: one ``git rev-parse`` process
per result file and a second JSON parse of every file; one ``git rev-list --all`` replaces both.

Layout: asv reads every folder of its results directory as a machine, so run files
(``runs/``, ``logs/``) must not share it. The history lives in ``results/asv/`` beside the runs;
a history in the old flat layout (``results/benchmarks.json`` + machine folders beside
``results/runs/``) is moved there on first use (``migrate_flat_layout``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_coldstart.history import asv_store, commits
from pytest_coldstart.model.errors import ConfigError

#: Where the history lives by default: beside the run files, never among them.
DEFAULT_ASV_RESULTS = Path("results/asv")
#: What asv itself keeps in a results directory (everything else there is not asv's).
_ASV_FILES = ("benchmarks.json",)


def migrate_flat_layout(asv_dir: Path) -> list[str]:
    """Move an old flat history (``X/benchmarks.json``, ``X/<machine>/``) into ``X/asv/`` = *asv_dir*.

    Only when *asv_dir* is named ``asv``, holds no history yet and its parent holds one. Returns what
    was moved (empty when nothing was to do); moves within one file system, so each is atomic.
    """
    parent = asv_dir.parent
    if asv_dir.name != "asv" or (asv_dir / "benchmarks.json").is_file() or \
            not (parent / "benchmarks.json").is_file():
        return []
    moved: list[str] = []
    with asv_store.locked(parent):
        if (asv_dir / "benchmarks.json").is_file() or not (parent / "benchmarks.json").is_file():
            return []  # another process migrated it while this one waited
        asv_dir.mkdir(exist_ok=True)
        for machine in asv_store.machines(parent):
            if machine == asv_dir.name:
                continue
            os.replace(parent / machine, asv_dir / machine)
            moved.append(machine)
        # benchmarks.json last: while it is still in the parent, a crash leaves a history asv can find
        for name in _ASV_FILES:
            if (parent / name).is_file():
                os.replace(parent / name, asv_dir / name)
                moved.append(name)
    print(f"coldstart: moved the asv history in {parent} ({', '.join(moved)}) to {asv_dir}, so the run files "
          "there are no longer read as asv machines", file=sys.stderr)
    return moved


def resolve_results_dir(asv_dir: Path) -> Path:
    """*asv_dir* after migrating an old flat layout into it (see ``migrate_flat_layout``)."""
    migrate_flat_layout(asv_dir)
    return asv_dir


class _Hashes(list[str]):
    """The commits to publish: asv wants a list (``range_spec``) and tests ``in`` once per result file."""

    def __init__(self, hashes: Sequence[str]) -> None:
        super().__init__(hashes)
        self._set = frozenset(hashes)

    def __contains__(self, item: object) -> bool:
        return item in self._set


def _git_commits(repo: Path) -> dict[str, list[str]]:
    """Every commit reachable from a ref, by its first 8 characters (asv's file-name prefix)."""
    by_prefix: dict[str, list[str]] = {}
    for full in commits.git(repo, "rev-list", "--all").split():
        by_prefix.setdefault(full[:8], []).append(full)
    return by_prefix


def _commit_of(path: Path) -> str | None:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("commit_hash")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _sweep_branches(repo: Path) -> list[str]:
    try:
        out = commits.git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/coldstart-sweep*")
    except ConfigError:
        return []
    return [line for line in out.splitlines() if line]


def asv_steps(data: Sequence[tuple[Any, Any, Any]]) -> list[tuple[Any, Any, float, float, float]]:
    """asv's ``graph._compute_graph_steps`` contract, from ``history.changes``' segmentation.

    *data*: (revision, value, weight) per point; returns (left revision, right revision + 1, median,
    min, mean absolute deviation from the median) per segment, as asv 0.6's regressions page reads it.
    """
    from pytest_coldstart.history import changes

    points = [(x, float(y)) for x, y, w in data
              if y is not None and not (isinstance(y, float) and math.isnan(y)) and (w is None or w > 0)]
    if not points:
        return []
    values = [y for _, y in points]
    if min(values) <= 0:  # not a duration (counts, zeros): asv's own detection
        return _asv_compute_graph_steps(data)
    cuts = [cut for cut, *_ in changes.judge_values(values, changes.Settings())]
    bounds = [0, *cuts, len(points)]
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        seg = values[lo:hi]
        mid = changes.median(seg)
        out.append((points[lo][0], points[hi - 1][0] + 1, mid, min(seg), sum(abs(v - mid) for v in seg) / len(seg)))
    return out


def _asv_compute_graph_steps(data: Any) -> Any:
    import asv.graph

    return _ORIGINAL.get("steps", asv.graph._compute_graph_steps)(data)


_ORIGINAL: dict[str, Any] = {}


@contextlib.contextmanager
def _site_steps() -> Iterator[bool]:
    """asv's graphs take their steps from ``asv_steps`` for the duration (restored after)."""
    import asv.graph

    original = getattr(asv.graph, "_compute_graph_steps", None)
    if original is None or importlib.util.find_spec("ruptures") is None:  # another asv, or no ruptures: asv's own
        yield False
        return
    _ORIGINAL["steps"] = original
    asv.graph._compute_graph_steps = asv_steps
    try:
        yield True
    finally:
        asv.graph._compute_graph_steps = original
        _ORIGINAL.pop("steps", None)


def publish(config_path: Path, html_dir: Path | None = None, vendor_dir: Path | None = None,
            results_dir: Path | None = None) -> Path:
    """``asv publish`` for the commits git knows, with every local sweep branch included."""
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
    results = resolve_results_dir(Path(conf.results_dir))
    if not (results / "benchmarks.json").is_file():
        raise ConfigError(f"no asv history in {results} (benchmarks.json missing); record results first: "
                          "pytest benchmarks -m coldstart (records into results/asv)")
    strays = sorted(p.name for p in results.iterdir() if p.is_dir() and not (p / "machine.json").is_file()
                    and not p.name.startswith("."))
    if strays:
        print(f"coldstart publish: {results} holds folders that are not asv machines ({', '.join(strays)}); "
              "asv skips them with a warning. Keep run files out of the asv results directory.", file=sys.stderr)
    conf.branches = [b for b in conf.branches if commits.is_known(repo, b)] + \
        [b for b in _sweep_branches(repo) if b not in conf.branches]
    if not conf.branches:
        raise ConfigError(f"none of the branches in {config_path} exist in {repo}")
    by_prefix = _git_commits(repo)
    known: set[str] = set()
    unknown: set[str] = set()
    for machine in asv_store.machines(results):
        for path in (results / machine).glob("*.json"):
            if path.name == "machine.json":
                continue
            candidates = by_prefix.get(path.name.split("-")[0], [])
            if len(candidates) == 1:
                known.add(candidates[0])
                continue
            full = _commit_of(path)  # no commit, or a prefix two commits share: the file says which
            (known if full and any(c == full for c in candidates) else unknown).add(full or path.name)
    if unknown:
        print(f"coldstart publish: skipping results of {len(unknown)} commit(s) git does not know: "
              f"{', '.join(sorted(u[:8] for u in unknown))} (fetch them to include them)", file=sys.stderr)
    if not known:
        raise ConfigError(f"no results in {results} belong to commits in {repo}")
    with _site_steps():
        Publish.run(conf, range_spec=_Hashes(sorted(known)), pull=False)
    if vendor_dir is not None:
        from pytest_coldstart.history.asv_site import fetch_vendor, localize

        localize(Path(conf.html_dir), fetch_vendor(vendor_dir))
    return Path(conf.html_dir)
