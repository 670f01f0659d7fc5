"""Steps in the asv history: which case and metric moved, between which commits, and what changed there.

The history is one point per commit (the median of that commit's starts, as asv plots it), per machine,
case and metric, in the order of the branch's first-parent history. On the log of each series,
binary segmentation with the least-squares cost (``ruptures.Binseg``, model ``l2``; ruptures 1.1)
proposes change points; its penalty is ``PENALTY * sigma**2 * log(n)``, with sigma estimated from the
point-to-point differences (median absolute deviation), so a step in the series does not inflate it.
ruptures' PELT gives the same points but is quadratic in pure Python (3 s for 1,000 points, 31 s for
3,000); MongoDB's E-Divisive (signal-processing-algorithms 2.1) pins numpy<2 and Python 3.11 only.

A proposed point is kept as a *step* only when the series really moved there, judged on the points
either side up to the neighbouring change points (at most ``WINDOW``): the medians differ by at least
``min_change`` and ``floor_s`` seconds, and a two-sided Mann-Whitney U test gives p <= ``alpha``
(``confidence = 1 - p``). Each step names the last commit before it (``good``) and the first after
(``bad``), the phase of that case that moved most in seconds over the same commits, what the recorded
requirements say changed between the two commits (vLLM, torch, Ray, driver, CUDA, Python), and the
git log of the range.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.history import asv_store, commits
from pytest_coldstart.logs.timeline import PHASE_NAMES
from pytest_coldstart.model.case import CaseKey
from pytest_coldstart.model.errors import ConfigError

#: Binseg's penalty in units of sigma**2 * log(n): BIC's 2 doubled, for the tails of real starts.
PENALTY = 4.0
#: Fewest points on either side of a step (a step at the newest commits shows after this many nightlies).
MIN_SEGMENT = 3
#: Most points either side that judge a step (a long history must not hide a step behind old drift).
WINDOW = 50
#: Most points either side that size a step (its medians).
SIZE_WINDOW = 250
#: The requirements every step reports, before -> after (asv_store.requirements writes them per commit).
REQUIREMENT_KEYS: tuple[str, ...] = ("vllm", "vllm_distribution", "torch", "ray", "gpu_driver", "cuda_version",
                                     "python", "pytest_coldstart")
#: Commits listed per step; the count says how many more there are.
LOG_LINES = 20


@dataclass(frozen=True)
class Settings:
    """How big and how sure a step must be to be reported."""

    min_change: float = 0.05
    floor_s: float = 0.2
    alpha: float = 1e-3
    penalty: float = PENALTY


@dataclass(frozen=True)
class RecordedCommit:
    """One commit of the history: its hash, position on the branch, date and recorded requirements."""

    hash: str
    position: int
    date_ms: int
    requirements: Mapping[str, str]


@dataclass(frozen=True)
class Series:
    """One machine x case x metric: (commit position, seconds) in branch order."""

    machine: str
    case: CaseKey
    metric: str
    positions: tuple[int, ...]
    values_s: tuple[float, ...]


@dataclass(frozen=True)
class PhaseMove:
    """How far one phase of the case moved over the step's commits."""

    phase: str
    before_s: float
    after_s: float

    @property
    def delta_s(self) -> float:
        return self.after_s - self.before_s


@dataclass(frozen=True)
class RequirementChange:
    name: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Step:
    """A change point that passed the size and confidence checks."""

    machine: str
    case: CaseKey
    metric: str
    good: str
    bad: str
    good_position: int
    bad_position: int
    before_s: float
    after_s: float
    points_before: int
    points_after: int
    p_value: float
    moved_most: PhaseMove | None
    requirements: tuple[RequirementChange, ...]
    log: tuple[str, ...]
    log_count: int
    #: Index of the first bad point among the series' points (recorded commits only): stable as nights
    #: append points, and the same for the phases and totals of one case.
    bad_index: int = 0

    @property
    def ratio(self) -> float:
        return self.after_s / self.before_s

    @property
    def change(self) -> float:
        """Relative size: +0.15 is 15 % slower."""
        return self.ratio - 1.0

    @property
    def slower(self) -> bool:
        return self.after_s > self.before_s

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value

    @property
    def series_key(self) -> str:
        """Machine, case and metric as one string (the issue marker's key)."""
        return "/".join((self.machine, *self.case.astuple(), self.metric))

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "model": self.case.model, "optimization": self.case.optimization,
                "launcher": self.case.launcher, "metric": self.metric, "good": self.good, "bad": self.bad,
                "good_position": self.good_position, "bad_position": self.bad_position, "bad_index": self.bad_index,
                "before_s": self.before_s, "after_s": self.after_s, "change": self.change,
                "points_before": self.points_before, "points_after": self.points_after,
                "p_value": self.p_value, "confidence": self.confidence,
                "moved_most": None if self.moved_most is None else
                {"phase": self.moved_most.phase, "before_s": self.moved_most.before_s,
                 "after_s": self.moved_most.after_s, "delta_s": self.moved_most.delta_s},
                "requirements": [{"name": r.name, "before": r.before, "after": r.after, "changed": r.changed}
                                 for r in self.requirements],
                "log": list(self.log), "log_count": self.log_count}


@dataclass(frozen=True)
class Changes:
    """Every step found, and what was examined."""

    results_dir: Path
    branch: str
    commits: int
    series: int
    steps: tuple[Step, ...]
    settings: Settings
    notes: tuple[str, ...] = field(default=())

    @property
    def slowdowns(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.slower)

    @property
    def exit_code(self) -> int:
        """1 when the history holds a slowdown, else 0 (2 is raised as a ConfigError by the loader)."""
        return 1 if self.slowdowns else 0

    def to_dict(self) -> dict[str, Any]:
        return {"results_dir": str(self.results_dir), "branch": self.branch, "commits": self.commits,
                "series": self.series, "settings": {"min_change": self.settings.min_change,
                                                    "floor_s": self.settings.floor_s, "alpha": self.settings.alpha,
                                                    "penalty": self.settings.penalty, "method": "ruptures.Binseg l2"},
                "notes": list(self.notes), "steps": [s.to_dict() for s in self.steps], "exit_code": self.exit_code}


@dataclass(frozen=True)
class History:
    """The asv history of one branch: commits in order and every series."""

    results_dir: Path
    branch: str
    commits: tuple[RecordedCommit, ...]
    series: tuple[Series, ...]
    notes: tuple[str, ...] = ()


def _require_libraries() -> tuple[Any, Any, Any]:
    try:
        import numpy
        from scipy import stats

        ruptures = importlib.import_module("ruptures")  # no type hints shipped (ruptures 1.1)
    except ImportError:
        raise ConfigError("coldstart changes needs ruptures, numpy and scipy: pip install 'pytest-coldstart[asv]'") \
            from None
    return numpy, ruptures, stats


def load_history(results_dir: Path, repo: Path, branch: str = "HEAD") -> History:
    """Every series of *results_dir* on the commits of *branch* (first parent), in branch order."""
    asv = asv_store.require_asv()
    if not (results_dir / "benchmarks.json").is_file():
        raise ConfigError(f"no asv history in {results_dir} (benchmarks.json missing); record results first "
                          "(coldstart record RESULTS_DIR --asv-results DIR)")
    order = commits.git(repo, "rev-list", "--first-parent", "--reverse", branch).split()
    if not order:
        raise ConfigError(f"{branch} has no commits in {repo}")
    position = {h: i for i, h in enumerate(order)}
    recorded: dict[str, RecordedCommit] = {}
    points: dict[tuple[str, CaseKey, str], dict[int, float]] = {}
    off_branch: set[str] = set()
    for machine in asv_store.machines(results_dir):
        for path in sorted((results_dir / machine).glob("*.json")):
            if path.name == "machine.json":
                continue
            try:
                res = asv.results.Results.load(str(path), machine_name=machine)
            except asv.util.UserError as exc:
                raise ConfigError(f"{path}: {exc}; move it aside or run `asv update`") from None
            pos = position.get(res.commit_hash)
            if pos is None:
                off_branch.add(res.commit_hash[:8])
                continue
            reqs = {k: str(v) for k, v in (res._requirements or {}).items()}  # no public accessor (asv 0.6.6)
            recorded.setdefault(res.commit_hash, RecordedCommit(res.commit_hash, pos, int(res.date or 0), reqs))
            for bench in res.get_all_result_keys():
                metric = asv_store.BENCHMARK_NAMES.get(bench)
                if metric is None or metric == asv_store.FAILED_METRIC:
                    continue
                params = res.get_result_params(bench)
                values = res.get_result_value(bench, params)
                for combo, value in zip(_combos(params), values, strict=True):
                    if value is None or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
                        continue  # failed, not run, or not observed: no point (never a zero)
                    key = CaseKey(*(asv_store.unrepr(v) for v in combo))
                    points.setdefault((machine, key, metric), {})[pos] = float(value)
    series = []
    for (machine, key, metric), by_pos in sorted(points.items(), key=lambda kv: (kv[0][0], kv[0][1].astuple(),
                                                                                 kv[0][2])):
        ordered = sorted(by_pos.items())
        series.append(Series(machine, key, metric, tuple(p for p, _ in ordered), tuple(v for _, v in ordered)))
    notes = (f"{len(off_branch)} recorded commit(s) are not on {branch} (first parent) and were left out: "
             f"{', '.join(sorted(off_branch)[:10])}{' ...' if len(off_branch) > 10 else ''}",) if off_branch else ()
    return History(results_dir, branch, tuple(sorted(recorded.values(), key=lambda c: c.position)), tuple(series),
                   notes)


def _combos(params: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    import itertools

    return list(itertools.product(*params))


def change_points(values_s: Sequence[float], settings: Settings) -> list[int]:
    """Indices where binary segmentation starts a new segment (in log seconds); none for short series."""
    numpy, ruptures, _ = _require_libraries()
    n = len(values_s)
    if n < 2 * MIN_SEGMENT:
        return []
    x = numpy.log(numpy.asarray(values_s, dtype=float))
    diffs = numpy.diff(x)
    sigma = float(numpy.median(numpy.abs(diffs - numpy.median(diffs)))) / 0.6745 / math.sqrt(2)
    if sigma <= 0:  # a constant stretch: the smallest spread that still separates real steps
        sigma = max(float(numpy.std(diffs)) / math.sqrt(2), 1e-6)
    penalty = settings.penalty * sigma ** 2 * math.log(n)
    algo = ruptures.Binseg(custom_cost=_cumulative_l2(ruptures)(), min_size=MIN_SEGMENT, jump=1).fit(x)
    return [int(b) for b in algo.predict(pen=penalty)[:-1]]


def _cumulative_l2(ruptures: Any) -> Any:
    """ruptures' least-squares cost (``CostL2``, the same numbers) from prefix sums: O(1) per segment.

    ``CostL2.error`` takes a variance over the segment, so binary segmentation over n points costs
    O(n^2) (0.13 s for 3,000, per series); with prefix sums it is O(n) per split.
    """

    class CumulativeL2(ruptures.base.BaseCost):  # ruptures is Any here (no type hints): nothing to check
        model = "l2-cumulative"
        min_size = 1

        def fit(self, signal: Any) -> CumulativeL2:
            import numpy

            x = numpy.asarray(signal, dtype=float).reshape(-1)
            self.signal = x.reshape(-1, 1)  # Binseg reads its length
            self.s1 = [0.0, *numpy.cumsum(x).tolist()]
            self.s2 = [0.0, *numpy.cumsum(x * x).tolist()]
            return self

        def error(self, start: int, end: int) -> float:
            if end - start < self.min_size:
                raise ruptures.exceptions.NotEnoughPoints
            total = self.s1[end] - self.s1[start]
            return max(self.s2[end] - self.s2[start] - total * total / (end - start), 0.0)

    return CumulativeL2


def judge(series: Series, settings: Settings) -> list[tuple[int, int, int, float]]:
    """(index of the first point after, window start, window end, p) of each change point that is a step."""
    return judge_values(series.values_s, settings)


def judge_values(values: Sequence[float], settings: Settings) -> list[tuple[int, int, int, float]]:
    """``judge`` on plain seconds (asv's site uses it too: history.asv_publish)."""
    numpy, _, stats = _require_libraries()
    cuts = change_points(values, settings)
    bounds = [0, *cuts, len(values)]
    kept = []
    for k, cut in enumerate(cuts):
        lo, hi = max(bounds[k], cut - WINDOW), min(bounds[k + 2], cut + WINDOW)
        before, after = values[lo:cut], values[cut:hi]
        m_before, m_after = float(numpy.median(before)), float(numpy.median(after))
        if abs(math.log(m_after / m_before)) < math.log1p(settings.min_change) or \
                abs(m_after - m_before) < settings.floor_s:
            continue
        p = float(stats.mannwhitneyu(before, after, alternative="two-sided").pvalue)
        if p <= settings.alpha:
            kept.append((cut, lo, hi, p))
    return kept


def _segment(series: Series, settings: Settings, cut: int) -> tuple[int, int]:
    cuts = change_points(series.values_s, settings)
    left = max([0, *(c for c in cuts if c < cut)])
    right = min([len(series.values_s), *(c for c in cuts if c > cut)])
    return max(left, cut - SIZE_WINDOW), min(right, cut + SIZE_WINDOW)


def find_steps(history: History, repo: Path, settings: Settings | None = None) -> Changes:
    """Every step in *history*, with what moved and what changed."""
    settings = settings or Settings()
    by_position = {c.position: c for c in history.commits}
    index = {(s.machine, s.case, s.metric): s for s in history.series}
    steps = []
    for series in history.series:
        for cut, _lo, _hi, p in judge(series, settings):
            good, bad = by_position[series.positions[cut - 1]], by_position[series.positions[cut]]
            # The size from the whole segments either side (up to SIZE_WINDOW points): the points right
            # next to a change point chosen for its contrast overstate it (+23 % for a +15 % step).
            seg_lo, seg_hi = _segment(series, settings, cut)
            before = series.values_s[seg_lo:cut]
            after = series.values_s[cut:seg_hi]
            window_before = set(series.positions[seg_lo:cut])
            window_after = set(series.positions[cut:seg_hi])
            steps.append(Step(
                series.machine, series.case, series.metric, good.hash, bad.hash, good.position, bad.position,
                median(before), median(after), len(before), len(after), p,
                _moved_most(index, series, window_before, window_after),
                tuple(RequirementChange(k, good.requirements.get(k), bad.requirements.get(k))
                      for k in REQUIREMENT_KEYS if good.requirements.get(k) or bad.requirements.get(k)),
                *_log(repo, good.hash, bad.hash), bad_index=cut))
    steps.sort(key=lambda s: (s.bad_position, s.machine, s.case.astuple(), s.metric))
    return Changes(history.results_dir, history.branch, len(history.commits), len(history.series), tuple(steps),
                   settings, history.notes)


def median(values: Sequence[float]) -> float:
    """The median (no numpy for a handful of points)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _moved_most(index: Mapping[tuple[str, CaseKey, str], Series], series: Series, before: set[int],
                after: set[int]) -> PhaseMove | None:
    """The phase of the same case whose median moved most (seconds) between the step's two windows."""
    best: PhaseMove | None = None
    for phase in PHASE_NAMES:
        other = index.get((series.machine, series.case, phase))
        if other is None:
            continue
        b = [v for p, v in zip(other.positions, other.values_s, strict=True) if p in before]
        a = [v for p, v in zip(other.positions, other.values_s, strict=True) if p in after]
        if not b or not a:
            continue
        move = PhaseMove(phase, median(b), median(a))
        if best is None or abs(move.delta_s) > abs(best.delta_s):
            best = move
    return best


def _log(repo: Path, good: str, bad: str) -> tuple[tuple[str, ...], int]:
    """``git log --oneline good..bad`` (the commits that may have caused the step), at most LOG_LINES."""
    try:
        count = int(commits.git(repo, "rev-list", "--count", f"{good}..{bad}") or 0)
        lines = commits.git(repo, "log", "--oneline", "--no-decorate", f"--max-count={LOG_LINES}",
                            f"{good}..{bad}").splitlines()
    except ConfigError:
        return (), 0
    return tuple(lines), count


def changes(results_dir: Path, repo: Path, *, branch: str = "HEAD", settings: Settings | None = None) -> Changes:
    """Load the history of *branch* and find its steps (``coldstart changes``)."""
    _require_libraries()
    return find_steps(load_history(results_dir, repo, branch), repo, settings)
