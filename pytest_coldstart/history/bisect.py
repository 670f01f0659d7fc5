"""``coldstart bisect``: the first bad point between a good one and a bad one, by interleaved cold starts.

The points are the commits of a repository (``git rev-list --first-parent good..bad``: each gets a
detached worktree and runs its own ``benchmarks/`` suite with its own code) or vLLM versions (a venv
per version, as ``coldstart sweep`` makes them: history/sweep.py). At each midpoint the gate runs
interleaved (base, head) pairs, base = the last point known good, head = the midpoint, until it can
answer: ``regressed`` moves the bad end there, ``unchanged`` the good end, ``undecided`` stops the
bisection and says between which points the first bad one lies (never a guess).

The gate is a callable (``GateFn``): given ``start(side, i)`` and ``collect()`` it runs pairs until it
decides. ``sequential_gate`` uses the sequential gate (``history.sequential.run_sequential``: alpha spent
over the looks, a trimmed statistic) when this package has it; without it, ``fixed_pairs_gate`` runs
``min_pairs`` pairs and judges them once with the paired rule of ``coldstart compare --paired``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_coldstart.history import commits
from pytest_coldstart.history.compare import CompareConfig, compare
from pytest_coldstart.history.samples import from_runs
from pytest_coldstart.history.sweep import run_logged
from pytest_coldstart.model.errors import ColdstartError, ConfigError
from pytest_coldstart.model.paths import under
from pytest_coldstart.model.result import RunResult, load_results

REGRESSED, UNCHANGED, UNDECIDED = "regressed", "unchanged", "undecided"
SIDES = ("base", "head")

StartFn = Callable[[str, int], None]
CollectFn = Callable[[], tuple[list[RunResult], list[RunResult]]]


@dataclass(frozen=True)
class GateAnswer:
    """What the gate said about one (good, candidate) comparison."""

    state: str
    pairs: int
    detail: str = ""


GateFn = Callable[[StartFn, CollectFn, Callable[[str], None]], GateAnswer]
#: One start of a point: (point, results dir, log file, side, pair index, log).
StartOne = Callable[["Point", Path, Path, str, int, Callable[[str], None]], None]


@dataclass(frozen=True)
class Point:
    """One candidate: how to run its cold starts (the interpreter, the directory with benchmarks/, env)."""

    label: str
    python: Path
    checkout: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """One gate run: the last known good point against a candidate."""

    good: str
    candidate: str
    answer: GateAnswer
    minutes: float


@dataclass(frozen=True)
class BisectResult:
    """Where the first bad point is, or between which points it lies when the gate could not decide."""

    points: tuple[str, ...]
    last_good: str
    first_bad: str | None
    probes: tuple[Probe, ...]
    state: str
    #: Between these two points when undecided (the first bad point is one of the later ones up to hi).
    range: tuple[str, str] | None = None

    @property
    def exit_code(self) -> int:
        """1: a first bad point named (a regression, located); 0: good..bad showed none; 2: undecided."""
        return {REGRESSED: 1, UNCHANGED: 0}.get(self.state, 2)

    def to_dict(self) -> dict[str, Any]:
        return {"points": list(self.points), "last_good": self.last_good, "first_bad": self.first_bad,
                "state": self.state, "range": list(self.range) if self.range else None,
                "probes": [{"good": p.good, "candidate": p.candidate, "state": p.answer.state,
                            "pairs": p.answer.pairs, "detail": p.answer.detail, "minutes": round(p.minutes, 1)}
                           for p in self.probes], "exit_code": self.exit_code}


def bisect(points: Sequence[str], run_gate: Callable[[str, str], GateAnswer], *, check_ends: bool = False,
           clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = print) -> BisectResult:
    """Binary search over *points* (oldest first; the first good, the last bad) with *run_gate(good, candidate)*.

    :param check_ends: first confirm that the last point is slower than the first (one more gate run).
    """
    if len(points) < 2:
        raise ConfigError("bisect needs a good and a bad point")
    probes: list[Probe] = []
    lo, hi = 0, len(points) - 1

    def probe(good: int, candidate: int) -> GateAnswer:
        log(f"bisect: {points[good]} (good) against {points[candidate]} "
            f"({hi - lo - 1} point(s) between the ends left)")
        t0 = clock()
        answer = run_gate(points[good], points[candidate])
        probes.append(Probe(points[good], points[candidate], answer, (clock() - t0) / 60))
        log(f"bisect: {points[candidate]} is {answer.state.upper()} after {answer.pairs} pair(s)"
            f"{f' ({answer.detail})' if answer.detail else ''}")
        return answer

    if check_ends:
        answer = probe(lo, hi)
        if answer.state != REGRESSED:
            state = UNCHANGED if answer.state == UNCHANGED else UNDECIDED
            return BisectResult(tuple(points), points[lo], None, tuple(probes), state, (points[lo], points[hi]))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        answer = probe(lo, mid)
        if answer.state == REGRESSED:
            hi = mid
        elif answer.state == UNCHANGED:
            lo = mid
        else:
            return BisectResult(tuple(points), points[lo], None, tuple(probes), UNDECIDED, (points[lo], points[hi]))
    return BisectResult(tuple(points), points[lo], points[hi], tuple(probes), REGRESSED)


def fixed_pairs_gate(pairs: int, config: CompareConfig | None = None) -> GateFn:
    """*pairs* interleaved pairs, judged once by the paired rule (exit 1 regressed, 0 unchanged, 2 undecided)."""

    def gate(start: StartFn, collect: CollectFn, log: Callable[[str], None]) -> GateAnswer:
        for i in range(1, pairs + 1):
            for side in SIDES:
                start(side, i)
        base, head = collect()
        try:
            comparison = compare(from_runs(base, "good"), from_runs(head, "candidate"),
                                 replace(config or CompareConfig(), paired=True), only_common=True)
        except ColdstartError as exc:
            return GateAnswer(UNDECIDED, pairs, str(exc))
        state = {1: REGRESSED, 0: UNCHANGED}.get(comparison.exit_code, UNDECIDED)
        flagged = sorted({row.metric for row in comparison.failing_rows})
        return GateAnswer(state, pairs, f"paired rule on {pairs} pairs" + (f": {', '.join(flagged)}" if flagged
                                                                           else ""))

    return gate


def sequential_gate(min_pairs: int, max_pairs: int, config: Any = None) -> GateFn | None:
    """The sequential gate (``history.sequential``), or None where this package does not have it yet."""
    try:
        sequential = importlib.import_module("pytest_coldstart.history.sequential")
    except ImportError:
        return None

    def gate(start: StartFn, collect: CollectFn, log: Callable[[str], None]) -> GateAnswer:
        design = sequential.SequentialDesign(min_pairs=min_pairs, max_pairs=max_pairs)
        outcome = sequential.run_sequential(start, collect, design=design, config=config, log=log,
                                            labels=("good", "candidate"))
        decision = outcome.decision
        moved = ", ".join(_moved(row) for row in decision.comparison.failing_rows)
        return GateAnswer(str(decision.state), int(decision.pairs),
                          "; ".join(filter(None, [str(decision.stop or ""), moved])))

    return gate


def _moved(row: Any) -> str:
    """``memory_profiling 0.55 -> 2.02 s`` (medians): which metric made the gate say regressed, and by how much."""
    base, head = row.base_median_s, row.head_median_s
    if base is None or head is None:
        return f"{row.metric} ({row.verdict})"
    return f"{row.metric} {base:.2f} -> {head:.2f} s"


def choose_gate(min_pairs: int, max_pairs: int, config: CompareConfig | None = None) -> tuple[GateFn, str]:
    """(gate, its name): the sequential gate when present, else the fixed paired rule on min_pairs pairs."""
    gate = sequential_gate(min_pairs, max_pairs)
    if gate is not None:
        return gate, f"sequential gate, {min_pairs}-{max_pairs} pairs"
    return fixed_pairs_gate(min_pairs, config), f"paired rule on {min_pairs} pairs (no sequential gate here)"


@dataclass(frozen=True)
class Runner:
    """How one cold start of a point is run: its suite, one start per pytest process."""

    model: str
    optimization: str
    out: Path
    workdir: Path
    timeout_s: float = 1800.0
    extra: tuple[str, ...] = ()

    def argv(self, point: Point, results: Path) -> list[str]:
        return [str(point.python), "-m", "pytest", "benchmarks", "-m", "coldstart", "-p", "no:cacheprovider", "-q",
                f"--rootdir={point.checkout}", f"--coldstart-model={self.model}",
                f"--coldstart-optimization={self.optimization}", f"--coldstart-results={results}",
                f"--coldstart-workdir={self.workdir}", "--coldstart-asv=off", *self.extra]

    def start(self, point: Point, results: Path, log_path: Path, side: str, i: int,
              log: Callable[[str], None]) -> None:
        """One cold start of *point*: its suite in its checkout, the result under *results*."""
        code = run_logged(self.argv(point, results), log_path, timeout_s=self.timeout_s, cwd=point.checkout,
                          env={**os.environ, **point.env})
        if code != 0:
            log(f"  {side} start {i} ({point.label}): pytest exited {code} (see {log_path})")

    def gate_for(self, gate: GateFn, points: dict[str, Point], log: Callable[[str], None] = print,
                 starter: StartOne | None = None) -> Callable[[str, str], GateAnswer]:
        """``run_gate(good, candidate)`` for ``bisect``: the gate over starts of the two points.

        :param starter: runs one start (default ``self.start``; the tests replay recorded real starts).
        """
        counter = [0]
        one = starter or self.start

        def run_gate(good: str, candidate: str) -> GateAnswer:
            counter[0] += 1
            probe_dir = under(self.out, f"probe-{counter[0]:02d}-{_safe(candidate)}", what="bisect point")
            sides = {"base": points[good], "head": points[candidate]}

            def start(side: str, i: int) -> None:
                one(sides[side], probe_dir / f"runs-{side}", probe_dir / "logs" / f"{side}-{i:02d}.log", side, i, log)

            def collect() -> tuple[list[RunResult], list[RunResult]]:
                found = []
                for side in SIDES:
                    d = probe_dir / f"runs-{side}"
                    found.append(load_results(d) if (d / "runs").is_dir() else [])
                return found[0], found[1]

            return gate(start, collect, log)

        return run_gate


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)[:40]


def commit_points(repo: Path, good: str, bad: str, checkouts: Path) -> list[Point]:
    """The good commit and every first-parent commit up to *bad*, each checked out (detached worktree)."""
    good_c, bad_c = commits.resolve(repo, good), commits.resolve(repo, bad)
    between = commits.git(repo, "rev-list", "--first-parent", "--reverse", f"{good_c.hash}..{bad_c.hash}").split()
    if not between or between[-1] != bad_c.hash:
        raise ConfigError(f"{bad} is not a descendant of {good} on the first-parent line in {repo}; pass the "
                          "older commit as --good")
    points = []
    for sha in [good_c.hash, *between]:
        checkout = checkouts / sha[:12]
        if not (checkout / ".git").exists():
            commits.git(repo, "worktree", "add", "--detach", "--force", str(checkout), sha)
        if not (checkout / "benchmarks").is_dir():
            raise ConfigError(f"commit {sha[:8]} has no benchmarks/ directory: it cannot run the cold-start suite")
        venv = checkout / ".venv" / "bin" / "python"
        python = venv if venv.exists() else Path(sys.executable)
        env = {} if venv.exists() else {"PYTHONPATH": os.pathsep.join([str(checkout),
                                                                         *filter(None, [os.environ.get("PYTHONPATH")])])}
        points.append(Point(sha[:8], python, checkout, env))
    return points


def version_points(versions: Sequence[str], explicit: dict[str, Path], venv_dir: Path, repo: Path,
                   log_dir: Path) -> list[Point]:
    """One venv per vLLM version (made when missing, as ``coldstart sweep`` does), all running *repo*'s suite."""
    from pytest_coldstart.history.sweep import choose_python, ensure_venv

    points = []
    for version in versions:
        python, managed = choose_python(version, explicit, venv_dir)
        if managed:
            python = ensure_venv(version, python.parent.parent, repo,
                                 under(log_dir, f"venv-{version}.log", what="vLLM version"))
        points.append(Point(version, python, repo))
    return points


def remove_checkouts(repo: Path, checkouts: Path) -> None:
    """Remove the worktrees ``commit_points`` made (the results stay under the bisect's output)."""
    for checkout in sorted(checkouts.glob("*")) if checkouts.is_dir() else []:
        try:
            commits.git(repo, "worktree", "remove", "--force", str(checkout))
        except ConfigError:
            shutil.rmtree(checkout, ignore_errors=True)
    with contextlib.suppress(ConfigError):
        commits.git(repo, "worktree", "prune")


def render_text(result: BisectResult, gate_name: str) -> str:
    lines = [f"bisect over {len(result.points)} point(s): {' '.join(result.points)} ({gate_name})"]
    for i, p in enumerate(result.probes, start=1):
        lines.append(f"  {i}. {p.good} (good) vs {p.candidate}: {p.answer.state.upper()} after {p.answer.pairs} "
                     f"pair(s), {p.minutes:.1f} min{f' - {p.answer.detail}' if p.answer.detail else ''}")
    if result.state == REGRESSED:
        lines.append(f"first bad: {result.first_bad} (last good: {result.last_good})")
    elif result.state == UNCHANGED:
        lines.append(f"no regression between {result.points[0]} and {result.points[-1]}: the gate said unchanged")
    else:
        lo, hi = result.range or (result.points[0], result.points[-1])
        lines.append(f"UNDECIDED: the first bad point is after {lo} and at or before {hi}; run again with more "
                     "pairs (--max-pairs) or on a quieter machine")
    return "\n".join(lines)
