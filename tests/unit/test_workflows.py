"""The GitHub Actions workflows: valid against GitHub's workflow schema (offline, the copy
check-jsonschema vendors), and shaped the way the README promises."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO

jsonschema = pytest.importorskip("jsonschema")
yaml = pytest.importorskip("ruamel.yaml")
pytest.importorskip("check_jsonschema")

WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("coldstart-nightly.yml", "coldstart-pr.yml", "cpu-lane.yml", "docs.yml")


def _load(name: str) -> dict[str, Any]:
    return yaml.YAML(typ="safe", pure=True).load((WORKFLOWS / name).read_text())


def _schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "github-workflows.json"
    return json.loads(vendored.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_valid_against_the_github_workflow_schema(name: str) -> None:
    validator = jsonschema.Draft7Validator(_schema())
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(_load(name))]
    assert not errors, errors


def test_schema_rejects_a_broken_workflow(tmp_path: Path) -> None:
    # The check must be able to fail: a job without runs-on or steps is invalid.
    broken = _load("cpu-lane.yml")
    broken["jobs"]["test"].pop("runs-on")
    validator = jsonschema.Draft7Validator(_schema())
    assert list(validator.iter_errors(broken))


def test_check_jsonschema_cli_agrees() -> None:
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *(str(WORKFLOWS / n) for n in NAMES)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _runs_on(job: dict[str, Any]) -> list[str]:
    value = job.get("runs-on", [])
    return [value] if isinstance(value, str) else list(value)


def _script(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job.get("steps", []))


def test_nightly_runs_on_the_h100_pool_and_persists_history() -> None:
    wf = _load("coldstart-nightly.yml")
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on` as true
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    bench = wf["jobs"]["bench"]
    assert {"self-hosted", "8xH100"} <= set(_runs_on(bench))
    assert "model" in bench["strategy"]["matrix"]
    assert "permissions" not in bench, "the GPU job must not get write access"
    history = wf["jobs"]["history"]
    assert "self-hosted" not in _runs_on(history)
    assert history["permissions"] == {"contents": "write", "issues": "write"}
    script = _script(history)
    assert 'git push origin "HEAD:$RESULTS_BRANCH"' in script
    assert "coldstart record" in script and "coldstart publish" in script
    assert any(s.get("uses", "").startswith("actions/upload-pages-artifact") for s in history["steps"])
    deploy = wf["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "github-pages"
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in deploy["steps"])


def test_pr_gate_never_runs_fork_code_on_the_self_hosted_runner() -> None:
    wf = _load("coldstart-pr.yml")
    triggers = wf[True] if True in wf else wf["on"]
    assert "pull_request_target" not in triggers, "pull_request_target would hand fork code our secrets"
    for name, job in wf["jobs"].items():
        if "self-hosted" in _runs_on(job):
            assert "github.event.pull_request.head.repo.full_name == github.repository" in job.get("if", ""), name
            assert job.get("environment"), f"{name}: needs an environment with required reviewers"
    assert "!= github.repository" in wf["jobs"]["fork-notice"]["if"]


def test_pr_gate_pairs_base_and_head_and_fails_on_regression() -> None:
    wf = _load("coldstart-pr.yml")
    paired, gate = wf["jobs"]["paired"], wf["jobs"]["gate"]
    script = _script(paired)
    # Sequential pairs instead of a fixed loop: the base's CLI alternates base and head on the same runner
    # and stops when the gate can answer (or at the cap / budget).
    assert "base/.venv/bin/coldstart gate run --base base --head head" in script
    for flag in ('--min-pairs "$MIN_PAIRS"', '--max-pairs "$MAX_PAIRS"', '--budget-min "$BUDGET_MIN"',
                 '--out "$GITHUB_WORKSPACE"'):
        assert flag in script
    assert wf["env"]["MAX_PAIRS"] == "20" and "for side in" not in script and "PAIRS:" not in str(paired["env"])
    assert "merge-base" in script
    assert "coldstart compare" not in script, "the GPU job (which runs the head's code) must not judge"
    assert any("upload-artifact" in s.get("uses", "") for s in paired["steps"])
    # The verdict: a hosted runner, the base commit checked out, the base's compare and thresholds.
    assert _runs_on(gate) == ["ubuntu-latest"]
    checkout = next(s for s in gate["steps"] if "actions/checkout" in s.get("uses", ""))
    assert checkout["with"]["ref"] == "${{ needs.paired.outputs.base_sha }}"
    gate_script = _script(gate)
    assert "pip install './base[asv]'" in gate_script
    assert "coldstart gate judge runs-base runs-head" in gate_script and "--markdown comment.md" in gate_script
    assert '--max-pairs "$MAX_PAIRS"' in gate_script  # the same design replayed
    assert "base/benchmarks/compare.toml" in gate_script, "the PR must not choose its own thresholds"
    assert re.search(r"1\) echo .*; exit 1 ;;", gate_script) and "exit 2" in gate_script
    comment = wf["jobs"]["comment"]
    assert comment["needs"] == "gate" and comment["permissions"] == {"pull-requests": "write"}
    from pytest_coldstart.report.compare import MARKER

    assert MARKER in comment["steps"][-1]["with"]["script"]


@pytest.mark.parametrize("name", NAMES)
def test_actions_pinned_credentials_dropped_artifacts_expire(name: str) -> None:
    wf = _load(name)
    for job_name, job in wf["jobs"].items():
        for step in job.get("steps", []):
            uses = step.get("uses", "")
            if uses:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), f"{name} {job_name}: {uses} not pinned by SHA"
            if "actions/checkout" in uses:
                pushes = job.get("permissions", {}).get("contents") == "write"
                assert step.get("with", {}).get("persist-credentials") is pushes, f"{name} {job_name}: credentials"
            if "actions/upload-artifact" in uses:
                assert step["with"].get("retention-days"), f"{name} {job_name}: artifact without retention-days"


def test_gpu_jobs_share_one_concurrency_group_and_run_the_preflight() -> None:
    for name in ("coldstart-pr.yml", "coldstart-nightly.yml"):
        for job in _load(name)["jobs"].values():
            if "self-hosted" in _runs_on(job):
                assert job["concurrency"] == {"group": "coldstart-gpu-pool", "cancel-in-progress": False}, name
                assert "coldstart preflight --gpus 8" in _script(job), name
                assert "nvidia-smi" not in _script(job), name
                assert "--coldstart-asv off" in _script(job), name


def test_nightly_writes_a_step_summary() -> None:
    assert "GITHUB_STEP_SUMMARY" in _script(_load("coldstart-nightly.yml")["jobs"]["bench"])


def test_cpu_lane_runs_make_test_on_a_hosted_runner() -> None:
    wf = _load("cpu-lane.yml")
    for job in wf["jobs"].values():
        assert _runs_on(job) == ["ubuntu-latest"]
    assert "make test" in _script(wf["jobs"]["test"])
    assert "make bench" in _script(wf["jobs"]["bench"])


def test_cpu_lane_runs_the_scaleout_benchmark_nightly_and_keeps_its_figure() -> None:
    wf = _load("cpu-lane.yml")
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers["schedule"] and "workflow_dispatch" in triggers
    job = wf["jobs"]["scaleout"]
    assert "schedule" in job["if"] and "make bench-scaleout" in _script(job) and "--model tiny-llama" in _script(job)
    assert "coldstart report runs-scaleout" in _script(job) and "GITHUB_STEP_SUMMARY" in _script(job)
    upload = [s for s in job["steps"] if "upload-artifact" in s.get("uses", "")]
    assert upload and upload[0]["with"]["path"] == "runs-scaleout"
    # the per-push jobs do not also run on the schedule
    assert all("schedule" in wf["jobs"][name]["if"] for name in ("test", "bench"))


def _commands(prefix: str) -> list[list[str]]:
    found = []
    for name in NAMES:
        text = (WORKFLOWS / name).read_text().replace("\\\n", " ")
        for line in text.splitlines():
            idx = line.find(prefix)
            if idx >= 0:
                try:
                    found.append(shlex.split(line[idx:].split("||")[0].split(">>")[0]))
                except ValueError:
                    continue
    return found


def test_coldstart_commands_in_workflows_exist() -> None:
    from pytest_coldstart.cli import build_parser

    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    commands = _commands("coldstart ") + _commands('"$cli" ')
    assert commands
    for argv in commands:
        sub = argv[1]
        if sub in ("compare", "record", "publish", "summary", "gate") and "--help" not in argv:
            parser_, rest = subs[sub], argv[2:]
            if sub == "gate":  # gate run | judge | study
                # argparse keeps its subparsers private: _subparsers is Optional in typeshed
                choices = parser_._subparsers._group_actions[0].choices  # type: ignore[union-attr]
                if len(argv) < 3 or argv[2] not in choices:
                    continue  # prose ("`coldstart gate run` ...") in a comment
                parser_, rest = choices[argv[2]], argv[3:]
            options = {o for a in parser_._actions for o in a.option_strings}
            used = {a.split("=")[0] for a in rest if a.startswith("--")}
            assert used <= options, (argv, used - options)


def test_pytest_options_in_workflows_exist() -> None:
    from pytest_coldstart.plugin.options import (
        SHORT_OPTIONS,  # benchmarks/conftest.py adds them
        all_plugin_options,
    )

    known = {o.flag for o in all_plugin_options()} | set(SHORT_OPTIONS) | {"-p", "-rA", "-m"}
    for name in NAMES:
        for flag in re.findall(r"(--(?:coldstart-[a-z-]+|model|optimization|launcher))\b", (WORKFLOWS / name).read_text()):
            assert flag in known, (name, flag)


def test_docs_site_is_built_strictly_and_published_beside_the_history() -> None:
    """Pages: the docs at the root, the asv site under /history/, from the docs workflow and the nightly alike."""
    for name, job in (("docs.yml", "build"), ("coldstart-nightly.yml", "history")):
        script = "\n".join(step.get("run", "") for step in _load(name)["jobs"][job]["steps"])
        assert "mkdocs build --strict -d site" in script, name
        # --quiet hides the warnings --strict counts
        assert not [line for line in script.splitlines() if "mkdocs" in line and "--quiet" in line], name
        assert "--html-dir site/history" in script, name
    docs = _load("docs.yml")
    assert docs["concurrency"]["group"] == "pages"
    assert docs["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}


def test_nightly_finds_steps_and_files_one_issue_per_step(tmp_path: Path) -> None:
    """The issue step runs after recording, reads what `coldstart changes --issue-actions` writes, and the
    github-script that applies it knows every action the plan can hold."""
    history = _load("coldstart-nightly.yml")["jobs"]["history"]
    names = [s.get("name", "") for s in history["steps"]]
    record, changes = names.index("Record into asv"), names.index("Find steps in the history")
    listing, apply = names.index("List the step issues"), names.index("Open or update one issue per new step")
    assert record < listing < changes < apply
    run = history["steps"][changes]["run"]
    assert "coldstart changes" in run and "--issues-from step-issues.json" in run
    assert "--issue-actions issue-actions.json" in run
    lister = history["steps"][listing]["with"]["script"]
    assert "listForRepo" in lister and "labels: 'coldstart-step'" in lister and "state: 'all'" in lister
    applier = history["steps"][apply]["with"]["script"]
    assert "issues.create" in applier and "issues.update" in applier
    assert "issue-actions.json" in history["steps"][apply]["if"]
    from pytest_coldstart.report.changes import ISSUE_LABEL, IssueAction

    assert ISSUE_LABEL == "coldstart-step"
    for field in IssueAction("create", "s", "t", "b").to_dict():
        if field in ("title", "body", "labels", "number", "reason"):
            assert f"a.{field}" in applier or field == "series"
