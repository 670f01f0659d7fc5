"""``coldstart changes``: steps found in a 1,000-commit asv history built through the real ``record`` path.

The history (tests/history_builder.py) has the noisy spread measured on the CPU lane (log-ratio sd 0.085:
tests/data/noise-study), 3 starts per case and commit as the nightly records, and two injected +15 %
steps, each in one phase of one case; every other series is untouched.

The nightly's issue step is checked against two kinds of GitHub data:
- made here by hand: tests/data/github/issues-coldstart-step.json, the marked cases (an open issue for one
  step, placed a commit earlier by an earlier night; a closed one for the other; a pull request quoting a marker);
- recorded from api.github.com (tests/data/github/recorded/, SOURCES.md names each file's origin): the
  list-issues pages of octokit/fixtures (paginate-issues: 5 pages, ``body: null``) and of github3.py's
  cassettes (Repository_issues_state_all: 150 issues and pull requests, open and closed, labels as objects),
  the create and update requests they recorded, and the request-body schemas of ``issues/create`` and
  ``issues/update`` cut from GitHub's OpenAPI description.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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
ISSUES = DATA / "github" / "issues-coldstart-step.json"  # made here by hand
RECORDED = DATA / "github" / "recorded"  # recorded from api.github.com (SOURCES.md)


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


# --- the nightly's issue step against recorded GitHub traffic and GitHub's request schemas -------------------

NIGHTLY = REPO / ".github" / "workflows" / "coldstart-nightly.yml"


def _betamax_json(body: dict[str, Any]) -> Any:
    """A betamax response body: gzip in ``base64_string`` or plain ``string``."""
    if body.get("base64_string"):
        raw = base64.b64decode(body["base64_string"])
        return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return json.loads(body["string"])


def _recorded_pages() -> dict[str, list[list[dict[str, Any]]]]:
    """Each recorded list-issues response, page by page, as GitHub sent them."""
    octokit = json.loads((RECORDED / "octokit-fixtures" / "paginate-issues.normalized-fixture.json").read_text())
    cassette = json.loads((RECORDED / "github3py-cassettes" / "Repository_issues_state_all.json").read_text())
    return {"octokit-fixtures": [e["response"] for e in octokit if e["method"] == "get"],
            "github3py": [_betamax_json(i["response"]["body"]) for i in cassette["http_interactions"]
                          if i["request"]["method"] == "GET" and "/issues?" in i["request"]["uri"]]}


def _paginated(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What ``github.paginate`` resolves to and the nightly writes to step-issues.json: the pages' items in one array."""
    return [issue for page in pages for issue in page]


def _marker(action: report.IssueAction) -> str:
    return action.body.splitlines()[0]


def test_recorded_issue_lists_are_read_and_no_unmarked_issue_is_touched(found: Changes, tmp_path: Path) -> None:
    fresh = report.plan_issues(found, [])
    for source, pages in _recorded_pages().items():
        issues = _paginated(pages)
        # the real shape: the fields the plan reads, bodies that are null, empty or \r\n text, labels as objects
        assert all({"number", "state", "title", "body", "labels"} <= set(i) for i in issues), source
        assert not any("coldstart-step" in (i["body"] or "") for i in issues), source  # no marker anywhere
        path = tmp_path / f"{source}.json"
        path.write_text(json.dumps(issues))
        read = report.load_issues(path)
        assert [i["number"] for i in read] == [i["number"] for i in issues if "pull_request" not in i], source
        slurped = tmp_path / f"{source}-pages.json"
        slurped.write_text(json.dumps(pages))  # gh api --paginate --slurp: the same issues
        assert report.load_issues(slurped) == read, source
        # no issue carries our marker: every new step is a new issue, none of these is updated or kept
        plan = report.plan_issues(found, read)
        assert [(a.action, a.number) for a in plan] == [("create", None)] * len(fresh), source
    octokit, github3py = _recorded_pages()["octokit-fixtures"], _paginated(_recorded_pages()["github3py"])
    assert [len(p) for p in octokit] == [3, 3, 3, 3, 1] and all(i["body"] is None for p in octokit for i in p)
    assert len(github3py) == 150 and {i["state"] for i in github3py} == {"open", "closed"}
    assert sum("pull_request" in i for i in github3py) > 40 and any(i["body"] == "" for i in github3py)
    assert any("\r\n" in (i["body"] or "") for i in github3py)
    assert all(isinstance(label, dict) and "name" in label for i in github3py for label in i["labels"])


def _with_markers(found: Changes) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The recorded github3.py list, where three real entries got one of today's markers in front of their
    real body (GitHub returns \\r\\n line ends for bodies edited on the web): an open issue with labels, a
    closed issue, and an open pull request with a higher number quoting the same marker as the open issue."""
    markers = {a.series.split("/")[1]: _marker(a) for a in report.plan_issues(found, [])}
    issues = [dict(i) for i in _paginated(_recorded_pages()["github3py"])]
    by_number = {i["number"]: i for i in issues}
    open_issue = next(i for i in issues if i["state"] == "open" and i["labels"] and "pull_request" not in i)
    closed_issue = next(i for i in issues if i["state"] == "closed" and i["labels"] and "pull_request" not in i)
    pull = next(i for i in issues if i["state"] == "open" and "pull_request" in i)
    assert pull["number"] > open_issue["number"]  # an unfiltered pull request would win as the newest
    for issue, model in ((open_issue, "tiny-llama"), (closed_issue, "llama-3-8b"), (pull, "tiny-llama")):
        by_number[issue["number"]]["body"] = f"{markers[model]}\r\n{issue['body'] or ''}"
    return issues, {"open": open_issue["number"], "closed": closed_issue["number"], "pull": pull["number"]}


def test_a_marker_in_a_recorded_issue_is_updated_or_kept(found: Changes) -> None:
    issues, numbers = _with_markers(found)
    plan = {a.series.split("/")[1]: a for a in report.plan_issues(found, issues)}
    assert (plan["tiny-llama"].action, plan["tiny-llama"].number) == ("update", numbers["open"])
    assert (plan["llama-3-8b"].action, plan["llama-3-8b"].number) == ("keep", numbers["closed"])
    assert "closed" in plan["llama-3-8b"].reason


def test_cli_plans_from_recorded_pages(history: Path, tmp_path: Path, found: Changes) -> None:
    """The nightly's two steps as run: the paginated list written to a file, `coldstart changes` planning."""
    listed = tmp_path / "step-issues.json"
    listed.write_text(json.dumps(_paginated(_recorded_pages()["octokit-fixtures"])))
    actions = tmp_path / "issue-actions.json"
    out = _cli("changes", "--results-dir", "results/asv", "--repo", ".", "--issues-from", str(listed),
               "--issue-actions", str(actions), cwd=history)
    assert out.returncode == 1, out.stderr
    assert [a["action"] for a in json.loads(actions.read_text())] == ["create", "create"]
    issues, numbers = _with_markers(found)
    listed.write_text(json.dumps(issues))
    out = _cli("changes", "--results-dir", "results/asv", "--repo", ".", "--issues-from", str(listed),
               "--issue-actions", str(actions), cwd=history)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    planned = {(a["action"], a["number"]) for a in json.loads(actions.read_text())}
    assert planned == {("update", numbers["open"]), ("keep", numbers["closed"])}


def _operation(name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """GitHub's request-body schema and path parameters of one operation (tests/data/github/recorded/openapi)."""
    op = json.loads((RECORDED / "openapi" / f"{name}.request.json").read_text())
    return (op["requestBody"]["content"]["application/json"]["schema"],
            {p["name"]: p for p in op["parameters"] if p["in"] == "path"})


def _workflow_calls() -> dict[str, dict[str, str]]:
    """The arguments the nightly's script passes to github.rest.issues.create / update: name -> action field
    (``owner`` and ``repo`` come from the run's context)."""
    yaml = pytest.importorskip("ruamel.yaml")  # with jsonschema, from check-jsonschema (the dev extra)
    job = yaml.YAML(typ="safe", pure=True).load(NIGHTLY.read_text())["jobs"]
    steps = [s for j in job.values() for s in j.get("steps", [])]
    script = next(s for s in steps if s.get("name") == "Open or update one issue per new step")["with"]["script"]
    calls = {}
    for method, args in re.findall(r"github\.rest\.issues\.(create|update)\(\{([^}]*)\}\)", script):
        fields = {}
        for arg in (a.strip() for a in args.split(",")):
            name, _, value = (part.strip() for part in arg.partition(":"))
            fields[name] = value.removeprefix("a.") if value else "context"
        calls[method] = fields
    assert set(calls) == {"create", "update"}, script
    return calls


def _request(call: dict[str, str], action: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(path parameters, JSON body) of the request the script sends for one planned action."""
    values = {name: "pytest-coldstart" if field == "context" else action[field] for name, field in call.items()}
    path = {k: v for k, v in values.items() if k in ("owner", "repo", "issue_number")}
    return path, {k: v for k, v in values.items() if k not in path}


def _check(name: str, path: dict[str, Any], body: dict[str, Any]) -> list[str]:
    """Every way the request breaks GitHub's schema for the operation (none when valid)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema, params = _operation(name)
    validator = jsonschema.Draft4Validator(schema)  # OpenAPI 3.0 schemas are JSON Schema draft 4 plus keywords
    errors = [f"body: {e.message}" for e in validator.iter_errors(body)]
    errors += [f"body: {k} is not a field of {name}" for k in body if k not in schema["properties"]]
    for pname, param in params.items():
        if pname not in path:
            errors.append(f"path: {pname} missing")
        else:
            errors += [f"path: {pname}: {e.message}"
                       for e in jsonschema.Draft4Validator(param["schema"]).iter_errors(path[pname])]
    return errors


def test_issue_actions_are_valid_github_requests(found: Changes) -> None:
    calls = _workflow_calls()
    assert calls["create"] == {"owner": "context", "repo": "context", "title": "title", "body": "body",
                               "labels": "labels"}
    assert calls["update"] == {"owner": "context", "repo": "context", "issue_number": "number", "title": "title",
                               "body": "body"}
    issues, _ = _with_markers(found)
    plans = [report.plan_issues(found, []), report.plan_issues(found, report.load_issues(ISSUES)),
             report.plan_issues(found, [i for i in issues if "pull_request" not in i])]
    # as the CLI writes issue-actions.json and the script reads it back
    actions = json.loads(json.dumps([a.to_dict() for plan in plans for a in plan]))
    assert {a["action"] for a in actions} == {"create", "update", "keep"}
    for action in actions:
        if action["action"] == "keep":
            continue
        name = "issues-create" if action["action"] == "create" else "issues-update"
        path, body = _request(calls[action["action"]], action)
        assert _check(name, path, body) == [], (name, action["series"])
        assert isinstance(body["title"], str) and isinstance(body["body"], str)
        assert len(body["body"]) <= report.GITHUB_BODY_MAX_CHARS and len(body["title"]) <= report.GITHUB_TITLE_MAX_CHARS
        if action["action"] == "create":
            assert body["labels"] == [report.ISSUE_LABEL]
        else:
            assert isinstance(path["issue_number"], int)
    # the check can fail: what a broken plan or script would send
    path, body = _request(calls["update"], {**actions[0], "number": "41"})
    assert any("issue_number" in e for e in _check("issues-update", path, body))
    assert _check("issues-create", {"owner": "o", "repo": "r"}, {"title": "t", "labels": "coldstart-step"})
    assert _check("issues-create", {"owner": "o", "repo": "r"}, {"body": "no title"})
    assert _check("issues-create", {"owner": "o", "repo": "r"}, {"title": "t", "label": ["coldstart-step"]})


def test_recorded_requests_fit_the_extracted_schemas() -> None:
    """The create and update requests GitHub accepted (201, 200) validate against the schemas cut out here:
    the extraction kept what GitHub checks."""
    octokit = json.loads((RECORDED / "octokit-fixtures" / "add-labels-to-issue.normalized-fixture.json").read_text())
    create = next(e for e in octokit if e["method"] == "post" and e["path"].endswith("/issues"))
    assert create["status"] == 201
    assert _check("issues-create", {"owner": "octokit-fixture-org", "repo": "add-labels-to-issue"},
                  create["body"]) == []
    labels = next(e for e in octokit if e["path"].endswith("/labels"))
    assert all(isinstance(label, dict) for label in labels["response"])  # labels come back as objects
    requests = []
    for name in ("GitHub_create_issue", "Issue_closed"):
        cassette = json.loads((RECORDED / "github3py-cassettes" / f"{name}.json").read_text())
        requests += [i for i in cassette["http_interactions"] if i["request"]["method"] in ("POST", "PATCH")]
    for interaction in requests:
        request, status = interaction["request"], interaction["response"]["status"]["code"]
        match = re.search(r"/repos/([^/]+)/([^/]+)/issues(?:/(\d+))?$", request["uri"])
        assert match, request["uri"]
        path: dict[str, Any] = {"owner": match[1], "repo": match[2]}
        if match[3]:
            path["issue_number"] = int(match[3])
        name = "issues-update" if request["method"] == "PATCH" else "issues-create"
        body = json.loads(request["body"]["string"])
        assert (status, _check(name, path, body)) == ({"issues-create": 201, "issues-update": 200}[name], [])
    assert {i["request"]["method"] for i in requests} == {"POST", "PATCH"}


def test_issue_body_and_title_fit_githubs_limits(found: Changes) -> None:
    step = next(s for s in found.slowdowns if s.metric == "torch_compile")
    # 20 commits whose subjects run to 5,000 characters each: 100,000 characters of log
    long_log = dataclasses.replace(step, log=tuple(f"{i:07x} " + "x" * 5000 for i in range(20)), log_count=20)
    body = report.issue_body([long_log])
    assert len(body) <= report.GITHUB_BODY_MAX_CHARS < len("".join(long_log.log))
    assert body.splitlines()[0] == report.marker([long_log]) and report.MARKER_RE.match(body.splitlines()[0])
    assert sum(line.startswith("```") for line in body.splitlines()) % 2 == 0  # the log's code block closed
    assert "Cut to GitHub's limit of 65,536 characters" in body.splitlines()[-1]
    assert report.fit_body("short\n") == "short\n"
    cut = report.fit_body("a\n" * 40_000, limit=1_000)
    assert len(cut) <= 1_000 and cut.startswith("a\na\n") and "left out" in cut
    # a case with many moved metrics: the title keeps the headline step and the commit, within 256 characters
    many = [dataclasses.replace(step, metric=f"phase_with_a_long_name_{i:02d}") for i in range(16)]
    title = report.issue_title(many)
    assert len(title) <= report.GITHUB_TITLE_MAX_CHARS and "and 15 more metric(s)" in title
    assert title.endswith(f"at {step.bad[:8]} ({step.machine})")
    huge = dataclasses.replace(step, machine="m" * 300)
    assert len(report.issue_title([huge])) == report.GITHUB_TITLE_MAX_CHARS
