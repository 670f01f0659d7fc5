"""``coldstart changes``: steps found in a 1,000-commit asv history built through the real ``record`` path.

The history (tests/history_builder.py) has the noisy spread measured on the CPU lane (log-ratio sd 0.085:
tests/data/noise-study), 3 starts per case and commit as the nightly records, and two injected +15 %
steps, each in one phase of one case; every other series is untouched. The issue plan is checked against
GitHub's list-issues response (tests/data/github/issues-coldstart-step.json: an open issue for one step,
placed a commit earlier by an earlier night; a closed one for the other; a pull request quoting a marker).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import history_builder as hb

from ..conftest import DATA, REPO

pytest.importorskip("asv")
pytest.importorskip("ruptures")

from pytest_coldstart.history import asv_publish
from pytest_coldstart.history.changes import Changes, Settings, changes, judge_values
from pytest_coldstart.report import changes as report

TINY = ("tiny-llama", "baseline")
QUIET_CASE = ("tiny-llama", "compile_cache")
BIG = ("llama-3-8b", "baseline")
STEPS = (hb.Step(*TINY, "torch_compile", 1.15, 613), hb.Step(*BIG, "config", 1.15, 281))
ISSUES = DATA / "github" / "issues-coldstart-step.json"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("history")
    made = hb.make_repo(root, 1000)
    hb.build(root / "results" / "asv", made, [TINY, QUIET_CASE, BIG], sd=hb.NOISY_SD, steps=STEPS, seed=20,
             repeat=3)  # the nightly records 3 starts per case and commit
    return root


@pytest.fixture(scope="module")
def found(history: Path) -> Changes:
    return changes(history / "results" / "asv", history)


def test_each_injected_step_is_found_within_one_commit(found: Changes) -> None:
    for injected in STEPS:
        (step,) = [s for s in found.steps if (s.case.model, s.case.optimization) == (injected.model,
                                                                                     injected.optimization)
                   and s.metric == injected.phase]
        assert abs(step.bad_position - injected.at) <= 1, (step.bad_position, injected.at)
        assert step.good_position == step.bad_position - 1  # one point per commit: adjacent commits
        assert 0.10 <= step.change <= 0.20 and step.slower
        assert step.confidence > 0.999
        assert step.moved_most is not None and step.moved_most.phase == injected.phase
        assert step.log_count == 1 and step.log[0].endswith(f"commit {step.bad_position}")


def test_no_step_in_the_untouched_series(found: Changes) -> None:
    allowed = {(*TINY, "torch_compile"), (*TINY, "total_ready_s"), (*BIG, "config"), (*BIG, "total_ready_s")}
    extra = [(s.case.model, s.case.optimization, s.metric, s.bad_position) for s in found.steps
             if (s.case.model, s.case.optimization, s.metric) not in allowed]
    assert not extra
    assert not [s for s in found.steps if (s.case.model, s.case.optimization) == QUIET_CASE]
    # the totals, where they moved, moved near the phase's step (they move by a fraction of it: placed less exactly)
    for step in found.steps:
        twin = [s for s in found.steps if s.case == step.case and s.metric != step.metric]
        assert all(abs(t.bad_position - step.bad_position) <= report.SAME_STEP_POSITIONS for t in twin)
    assert found.exit_code == 1 and found.commits == 1000


def test_a_flat_series_has_no_step_and_a_small_move_is_not_one() -> None:
    import random

    rng = random.Random(3)
    flat = [60.0 * (1 + rng.gauss(0, 0.06)) for _ in range(1000)]
    assert judge_values(flat, Settings()) == []
    # +8 %: found at the default 5 %; under a 10 % minimum it is real but not reported
    moved = flat[:500] + [v * 1.08 for v in flat[500:]]
    assert [cut for cut, *_ in judge_values(moved, Settings())] in ([499], [500], [501])
    assert judge_values(moved, Settings(min_change=0.10)) == []


def test_markdown_and_json_name_range_size_confidence_phase_and_what_changed(found: Changes) -> None:
    markdown = report.render_markdown(found)
    assert "| tiny-llama / baseline | torch_compile |" in markdown
    assert "no recorded version changed; 1 commit(s)" in markdown
    data = found.to_dict()
    step = next(s for s in data["steps"] if s["metric"] == "torch_compile")
    assert set(step) >= {"good", "bad", "change", "confidence", "moved_most", "requirements", "log"}
    assert {r["name"] for r in step["requirements"]} >= {"vllm", "torch", "ray", "python"}
    json.dumps(data)


def test_the_issue_plan_against_githubs_issue_list(found: Changes) -> None:
    issues = report.load_issues(ISSUES)
    assert [i["number"] for i in issues] == [41, 33]  # the pull request is left out
    actions = {a.series.split("/")[1]: a for a in report.plan_issues(found, issues)}
    tiny, big = actions["tiny-llama"], actions["llama-3-8b"]
    # #41 marks the same step one commit earlier (an earlier night placed it there): updated, not duplicated
    assert tiny.action == "update" and tiny.number == 41
    assert tiny.body.startswith("<!-- coldstart-step series=bench-machine/tiny-llama/baseline/vllm at=")
    assert "torch_compile" in tiny.title and "total_ready_s" in tiny.body
    # #33 was closed by the team: left closed
    assert big.action == "keep" and big.number == 33 and "closed" in big.reason
    # with no issues at all: one new issue per stepped case, not per metric
    fresh = report.plan_issues(found, [])
    assert sorted(a.action for a in fresh) == ["create", "create"]
    # an issue already saying exactly this is left alone
    same = [{"number": 50, "state": "open", "title": tiny.title, "body": tiny.body}]
    again = {a.series.split("/")[1]: a for a in report.plan_issues(found, same)}
    assert again["tiny-llama"].action == "keep" and again["tiny-llama"].reason == "already up to date"


def test_issue_lists_in_gh_shapes(tmp_path: Path) -> None:
    data = json.loads(ISSUES.read_text())
    pages = tmp_path / "pages.json"
    pages.write_text(json.dumps([data[:1], data[1:]]))  # gh api --paginate --slurp
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(i) for i in data))  # gh api --paginate --jq '.[]'
    assert [i["number"] for i in report.load_issues(pages)] == [i["number"] for i in report.load_issues(lines)]
    bad = tmp_path / "bad.json"
    bad.write_text('{"message": "Bad credentials"}')
    with pytest.raises(Exception, match="issue list"):
        report.load_issues(bad)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_cli_exit_codes_json_and_issue_actions(history: Path, tmp_path: Path) -> None:
    actions = tmp_path / "actions.json"
    out = _cli("changes", "--results-dir", "results/asv", "--repo", ".", "--json", "--issues-from", str(ISSUES),
               "--issue-actions", str(actions), cwd=history)
    assert out.returncode == 1, out.stderr  # a slowdown in the history
    assert len(json.loads(out.stdout)["steps"]) >= 2
    assert [a["action"] for a in json.loads(actions.read_text())] in (["update", "keep"], ["keep", "update"])
    out = _cli("changes", "--results-dir", str(tmp_path / "none"), "--repo", ".", cwd=history)
    assert out.returncode == 2 and "benchmarks.json missing" in out.stderr and "Traceback" not in out.stderr
    out = _cli("changes", "--results-dir", "results/asv", "--issues-from", str(ISSUES), cwd=history)
    assert out.returncode == 2 and "go together" in out.stderr


def test_asv_site_steps_come_from_the_same_segmentation(found: Changes, history: Path) -> None:
    step = next(s for s in found.steps if s.metric == "torch_compile" and s.case.model == "tiny-llama")
    from pytest_coldstart.history.changes import load_history

    series = next(s for s in load_history(history / "results" / "asv", history).series
                  if (s.case.model, s.case.optimization, s.metric) == (*TINY, "torch_compile"))
    data = [(100 + p, v, 1.0) for p, v in zip(series.positions, series.values_s, strict=True)]
    segments = asv_publish.asv_steps(data)
    assert [seg[0] - 100 for seg in segments][1:] == [step.bad_position]  # left edges: where asv draws steps
    assert segments[0][1] == 100 + step.bad_position  # right edge exclusive, as asv's regressions page reads it
    assert segments[1][2] > segments[0][2]
    # counts with zeros are not durations: asv's own detection handles them
    zeros = [(i, 0.0, 1.0) for i in range(50)]
    assert asv_publish.asv_steps(zeros) == [(0, 50, 0.0, 0.0, 0.0)]


def test_publish_migrates_the_flat_layout_and_reads_only_asv_folders(tmp_path: Path) -> None:
    """Old layout: asv's files and the run files in one results/; asv read runs/ as a machine and warned
    "Skipping results: could not load results/runs/machine.json". Now the history moves to results/asv."""
    repo = tmp_path / "repo"
    made = hb.make_repo(repo, 6)
    flat = repo / "results"
    hb.build(flat, made, [TINY], sd=hb.QUIET_SD)  # the old default: --coldstart-asv = --coldstart-results
    (flat / "runs").mkdir()
    (flat / "runs" / "20260101T000000_tiny-llama_baseline_vllm_r0_abcdef.json").write_text("{}")
    (flat / "logs").mkdir()
    conf = hb.write_asv_conf(repo, Path("results/asv"), tmp_path / "html")
    out = _cli("publish", "--config", str(conf), cwd=repo)
    assert out.returncode == 0, out.stderr
    assert "moved the asv history" in out.stderr
    assert "Skipping results" not in out.stdout + out.stderr and "runs/machine.json" not in out.stdout + out.stderr
    assert (flat / "asv" / "benchmarks.json").is_file() and (flat / "asv" / "bench-machine").is_dir()
    assert not (flat / "benchmarks.json").exists() and (flat / "runs").is_dir()  # run files stay where they were
    assert list((tmp_path / "html" / "graphs").rglob("phases.torch_compile.json"))
    # a second publish has nothing to move
    again = _cli("publish", "--config", str(conf), cwd=repo)
    assert again.returncode == 0 and "moved" not in again.stderr
    # compare and record find the migrated history at the new default
    assert asv_publish.resolve_results_dir(flat / "asv") == flat / "asv"


def test_a_nightly_history_lists_every_commit_between_two_points(tmp_path: Path) -> None:
    """One recorded commit a night, four landed in between: the step names the range and its commits; the
    issue marker counts recorded points, so a later night placing it a point away finds the same issue."""
    made = hb.make_repo(tmp_path, 400)
    nightly = made[3::4]  # every fourth commit is the one the nightly measured
    hb.build(tmp_path / "results" / "asv", nightly, [TINY], sd=hb.QUIET_SD, repeat=3,
             steps=[hb.Step(*TINY, "torch_compile", 1.15, 60)], seed=4)
    found = changes(tmp_path / "results" / "asv", tmp_path)
    (step,) = [s for s in found.steps if s.metric == "torch_compile"]
    assert abs(step.bad_index - 60) <= 1
    assert step.bad_position == 4 * step.bad_index + 3 and step.good_position == step.bad_position - 4
    assert step.log_count == 4 and len(step.log) == 4  # the four commits that may have caused it
    (action,) = report.plan_issues(found, [])
    assert f"at={step.bad_index} " in action.body.splitlines()[0]
