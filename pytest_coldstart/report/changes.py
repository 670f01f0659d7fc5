"""``coldstart changes`` as text: the markdown table, and one GitHub issue per new slowdown.

The nightly lists the issues labelled ``coldstart-step`` (``GET /repos/{owner}/{repo}/issues``), and
``plan_issues`` decides for each slowdown step: create an issue, update the open one that carries its
marker, or leave alone an issue the team closed. The marker is a hidden first line, as the PR comment's
(``<!-- pytest-coldstart compare -->``): it names the series (machine/model/optimization/launcher)
and the step's index among the series' recorded points, so tomorrow's history, where the same step may be
placed a point or two apart, finds the same issue instead of opening a second one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.history.changes import Changes, Step
from pytest_coldstart.logs.timeline import PHASE_NAMES
from pytest_coldstart.model.errors import ConfigError

ISSUE_LABEL = "coldstart-step"
#: Steps of one case this many recorded points apart are one step (points, not commits: the nightly records
#: one commit a night): the total moves by a fraction of the phase's step and is placed less exactly (3
#: points off in tests/unit/test_changes.py), and tomorrow's history may place a step a point or two away.
SAME_STEP_POSITIONS = 5
#: GitHub refuses longer ones with 422 "body is too long (maximum is 65536 characters)" (counted in characters,
#: as Python's len; reported in googleapis/release-please#1034 and PyGithub/PyGithub#1906) and "title is too long
#: (maximum is 256 characters)" (googleapis/repo-automation-bots#1895). Neither is in GitHub's OpenAPI description.
GITHUB_BODY_MAX_CHARS = 65536
GITHUB_TITLE_MAX_CHARS = 256
MARKER_RE = re.compile(r"<!-- coldstart-step series=(?P<series>\S+) at=(?P<at>\d+) good=(?P<good>[0-9a-f]+) "
                       r"bad=(?P<bad>[0-9a-f]+) -->")


def _case(step: Step) -> str:
    text = f"{step.case.model} / {step.case.optimization}"
    return text if step.case.launcher == "vllm" else f"{text} ({step.case.launcher})"


def _change(step: Step) -> str:
    return f"{step.change:+.1%} ({step.before_s:.2f} → {step.after_s:.2f} s)".replace("%", " %")


def _confidence(step: Step) -> str:
    return f"{step.confidence:.2%}".replace("%", " %") + f" (p {step.p_value:.1e})"


def _moved(step: Step) -> str:
    move = step.moved_most
    if move is None:
        return "not observed"
    return f"{move.phase} {move.delta_s:+.2f} s ({move.before_s:.2f} → {move.after_s:.2f})"


def _what_changed(step: Step) -> str:
    changed = [f"{r.name} {r.before or '?'} → {r.after or '?'}" for r in step.requirements if r.changed]
    versions = "; ".join(changed) if changed else "no recorded version changed"
    return f"{versions}; {step.log_count} commit(s)"


def _commits(step: Step) -> str:
    return f"`{step.good[:8]}..{step.bad[:8]}`"


def render_markdown(changes: Changes) -> str:
    """The step table (the nightly's step summary) and the commits of each step."""
    lines = [f"### Steps in the cold-start history ({changes.branch}, {changes.commits} commits, "
             f"{changes.series} series)", ""]
    if not changes.steps:
        lines.append("No step: no series moved by at least "
                     f"{changes.settings.min_change:.0%} and {changes.settings.floor_s:g} s with p <= "
                     f"{changes.settings.alpha:g}.".replace("%", " %"))
    else:
        lines += ["| Machine | Case | Metric | Commits (last good..first bad) | Change | Confidence | "
                  "Phase that moved most | What changed |",
                  "|---|---|---|---|---|---|---|---|"]
        for step in changes.steps:
            lines.append(f"| {step.machine} | {_case(step)} | {step.metric} | {_commits(step)} | {_change(step)} | "
                         f"{_confidence(step)} | {_moved(step)} | {_what_changed(step)} |")
        for step in changes.steps:
            if step.log:
                lines += ["", f"<details><summary>{_case(step)} {step.metric}: {step.log_count} commit(s) in "
                          f"{step.good[:8]}..{step.bad[:8]}</summary>", "", "```",
                          *step.log, *(["..."] if step.log_count > len(step.log) else []), "```", "</details>"]
    lines += ["", "Method: ruptures binary segmentation (least squares on log seconds), each step kept when "
              f"its medians differ by >= {changes.settings.min_change:.0%} and >= {changes.settings.floor_s:g} s "
              f"with a Mann-Whitney p <= {changes.settings.alpha:g}.".replace("%", " %")]
    lines += [f"Note: {note}" for note in changes.notes]
    return "\n".join(lines) + "\n"


def render_text(changes: Changes) -> str:
    if not changes.steps:
        return (f"no step in {changes.series} series over {changes.commits} commits of {changes.branch} "
                f"({changes.results_dir})")
    out = [f"{len(changes.steps)} step(s) in {changes.series} series over {changes.commits} commits of "
           f"{changes.branch} ({changes.results_dir}):"]
    for step in changes.steps:
        out.append(f"  {step.machine} {_case(step)} {step.metric}: {step.good[:8]}..{step.bad[:8]} "
                   f"{_change(step)}, confidence {_confidence(step)}; moved most: {_moved(step)}; "
                   f"{_what_changed(step)}")
    out += [f"note: {note}" for note in changes.notes]
    return "\n".join(out)


def group_key(step: Step) -> str:
    """Machine and case: the steps of one case at (nearly) one commit are one issue."""
    return "/".join((step.machine, *step.case.astuple()))


def group_steps(steps: Sequence[Step]) -> list[tuple[Step, ...]]:
    """Slowdowns of one machine and case within SAME_STEP_POSITIONS commits of each other, together."""
    groups: list[list[Step]] = []
    for step in sorted(steps, key=lambda s: (group_key(s), s.bad_index)):
        last = groups[-1] if groups else None
        if last and group_key(last[0]) == group_key(step) and \
                step.bad_index - last[-1].bad_index <= SAME_STEP_POSITIONS:
            last.append(step)
        else:
            groups.append([step])
    return [tuple(sorted(g, key=_weight, reverse=True)) for g in groups]


def _weight(step: Step) -> tuple[bool, float]:
    """Phases before totals, then the largest move in seconds: the headline step of a group."""
    return step.metric in PHASE_NAMES, abs(step.after_s - step.before_s)


def marker(group: Sequence[Step]) -> str:
    head = group[0]
    return (f"<!-- coldstart-step series={group_key(head)} at={head.bad_index} good={head.good} "
            f"bad={head.bad} -->")


def issue_title(group: Sequence[Step]) -> str:
    """The headline step, the group's other metrics while they fit GitHub's 256 characters, then cut."""
    head = group[0]

    def title(rest: str) -> str:
        return (f"Cold-start step: {head.case.model}/{head.case.optimization} {head.metric} {head.change:+.1%}"
                f"{f' ({rest})' if rest else ''} at {head.bad[:8]} ({head.machine})").replace("%", " %")

    text = title(", ".join(f"{s.metric} {s.change:+.1%}" for s in group[1:]))
    if len(text) > GITHUB_TITLE_MAX_CHARS:
        text = title(f"and {len(group) - 1} more metric(s)")
    if len(text) > GITHUB_TITLE_MAX_CHARS:  # long model or machine names
        text = text[:GITHUB_TITLE_MAX_CHARS - 1] + "…"
    return text


def issue_body(group: Sequence[Step]) -> str:
    head = group[0]
    lines = [marker(group), f"`coldstart changes` found a step in the nightly history of {_case(head)} on "
             f"{head.machine}: last good commit {head.good[:8]}, first bad {head.bad[:8]}.", "",
             "| Metric | Commits (last good..first bad) | Change | Points either side | Confidence | "
             "Phase that moved most |", "|---|---|---|---|---|---|"]
    lines += [f"| {s.metric} | {_commits(s)} | {_change(s)} | {s.points_before} / {s.points_after} | "
              f"{_confidence(s)} | {_moved(s)} |" for s in group]
    lines += ["", "**What changed between the two commits** (recorded requirements):", ""]
    lines += [f"- {r.name}: {r.before or '?'} → {r.after or '?'}{'' if r.changed else ' (same)'}"
              for r in head.requirements] or ["- nothing recorded"]
    lines += ["", f"**Commits** ({head.log_count}):", "", "```", *head.log,
              *(["..."] if head.log_count > len(head.log) else []), "```", "",
              "Find the first bad commit in a longer range with `coldstart bisect`; close this issue when the "
              "step is explained (a closed issue is not reopened for the same step)."]
    return fit_body("\n".join(lines) + "\n")


def fit_body(body: str, limit: int = GITHUB_BODY_MAX_CHARS) -> str:
    """``body`` within GitHub's limit: cut at a line end (the marker, the first line, stays), a code block left
    open is closed, and a last line says how much was left out and where the whole report is."""
    if len(body) <= limit:
        return body
    note = ("\n_Cut to GitHub's limit of {limit:,} characters for an issue body ({left:,} left out); "
            "`coldstart changes --markdown FILE` writes the whole report._\n")
    room = limit - len(note.format(limit=limit, left=len(body))) - len("```\n")
    kept = body[:room]
    kept = kept[:kept.rfind("\n") + 1] if "\n" in kept else kept
    left = len(body) - len(kept)
    if sum(line.startswith("```") for line in kept.splitlines()) % 2:
        kept += "```\n"
    return kept + note.format(limit=limit, left=left)


@dataclass(frozen=True)
class IssueAction:
    """What the nightly does for one new slowdown: ``create``, ``update`` (number) or ``keep`` (reason)."""

    action: str
    series: str
    title: str
    body: str
    number: int | None = None
    reason: str = ""
    labels: tuple[str, ...] = field(default=(ISSUE_LABEL,))

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "number": self.number, "series": self.series, "title": self.title,
                "body": self.body, "labels": list(self.labels), "reason": self.reason}


def load_issues(path: Path) -> list[dict[str, Any]]:
    """GitHub's list-issues response: a JSON array, pages of arrays (``gh api --paginate --slurp``) or
    one issue per line (``--jq '.[]'``). Pull requests (they carry ``pull_request``) are left out."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the issue list {path}: {exc}") from None
    if not text:
        return []
    try:
        data: Any = json.loads(text)
    except ValueError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ConfigError(f"{path} is not GitHub's issue list (JSON array or JSON lines): {exc}") from None
    if isinstance(data, list) and data and all(isinstance(page, list) for page in data):
        data = [issue for page in data for issue in page]
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise ConfigError(f"{path} is not GitHub's issue list: expected an array of issue objects")
    return [i for i in data if "pull_request" not in i]


def _markers(issues: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], re.Match[str]]]:
    found = []
    for issue in issues:
        if "pull_request" in issue:  # GitHub lists pull requests as issues; one may quote a marker
            continue
        match = MARKER_RE.search(str(issue.get("body") or ""))
        if match:
            found.append((issue, match))
    return found


def plan_issues(changes: Changes, issues: Sequence[Mapping[str, Any]]) -> list[IssueAction]:
    """One action per new slowdown (a case's steps at one commit): create, update the open issue with its
    marker, or keep one the team closed."""
    known = _markers(issues)
    actions = []
    for group in group_steps(changes.slowdowns):
        head = group[0]
        key = group_key(head)
        body, title = issue_body(group), issue_title(group)
        same = [(issue, m) for issue, m in known if m["series"] == key
                and abs(int(m["at"]) - head.bad_index) <= SAME_STEP_POSITIONS]
        # An open issue wins over a closed one; among several, the newest (highest number).
        same.sort(key=lambda im: (im[0].get("state") == "open", int(im[0].get("number") or 0)), reverse=True)
        if not same:
            actions.append(IssueAction("create", key, title, body))
            continue
        issue = same[0][0]
        number = int(issue["number"])
        if issue.get("state") != "open":
            actions.append(IssueAction("keep", key, title, body, number,
                                       f"issue #{number} about this step was closed; not reopened"))
        elif str(issue.get("body") or "") == body and issue.get("title") == title:
            actions.append(IssueAction("keep", key, title, body, number, "already up to date"))
        else:
            actions.append(IssueAction("update", key, title, body, number))
    return actions
