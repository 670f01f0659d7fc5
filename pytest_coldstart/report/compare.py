"""The comparison as a PR comment (GitHub markdown) and as a terminal table.

The markdown starts with ``MARKER`` so a workflow can find and update its own
comment instead of adding one per push. Rows that need attention (regressed,
missing, newly over budget, improved, not comparable) come first; unchanged
rows fold into a ``<details>`` block so a 15-row table per case stays readable.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from pytest_coldstart.history.compare import (
    CASE_ROW,
    IMPROVED,
    MISSING,
    NOT_COMPARABLE,
    REGRESSED,
    UNCHANGED,
    UNDECIDED,
    Comparison,
    Row,
    Threshold,
)
from pytest_coldstart.model.case import CaseKey
from pytest_coldstart.model.files import atomic_write_text
from pytest_coldstart.model.redact import Redactor
from pytest_coldstart.model.result import RunResult
from pytest_coldstart.report.tables import add_columns

MARKER = "<!-- pytest-coldstart compare -->"
_BADGE = {REGRESSED: "🔴 **regressed**", MISSING: "🔴 **missing**", IMPROVED: "🟢 improved",
          NOT_COMPARABLE: "⚪ not comparable", UNCHANGED: "unchanged", UNDECIDED: "🟡 **undecided**"}
_CASE = {REGRESSED: "❌ REGRESSED", UNCHANGED: "✅ UNCHANGED", UNDECIDED: "⚠️ UNDECIDED",
         NOT_COMPARABLE: "⚪ not comparable"}


def _title(c: Comparison) -> str:
    if c.problems:
        return "⚠️ unusable input"
    if c.verdict == REGRESSED:
        return "❌ regression"
    if c.verdict == UNDECIDED:
        return "⚠️ UNDECIDED: could not decide" + (" (passing: on_undecided = \"pass\")" if c.exit_code == 0 else "")
    return "✅ no regression"


def _settle(rows: Sequence[Row]) -> str:
    """What would settle an undecided case: its headline row's detectable change and missing pairs."""
    for row in rows:
        if row.metric == "total_ready_s" and row.verdict == UNDECIDED:
            sequential = (row.test or "").startswith("sequential")
            what = ("" if row.detectable is None else f"only changes over {row.detectable * 100:+.1f} % ruled out"
                    if sequential else f"detectable change {row.detectable * 100:.1f} % at this sample size")
            more = "" if row.more is None else f"{row.more} more pair(s) (or starts per side) would settle it"
            return "; ".join(x for x in (what, more) if x)
    return ""


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _median_cell(row: Row, side: str) -> str:
    values = row.base_s if side == "base" else row.head_s
    median = row.base_median_s if side == "base" else row.head_median_s
    if row.metric == "failed_starts":
        return f"{values[0]:g}" if values else "—"
    return f"{_s(median)} ({len(values)})" if values else "—"


def _ratio(row: Row) -> str:
    if row.metric == "failed_starts" or row.ratio is None:
        return ""
    return f"{row.ratio:.2f}×"


def _delta(row: Row) -> str:
    if row.metric == "failed_starts" or row.base_median_s is None or row.head_median_s is None:
        return ""
    return f"{row.head_median_s - row.base_median_s:+.2f}"


def _verdict(row: Row) -> str:
    text = _BADGE[row.verdict]
    if row.over_budget:
        text += (" · 🔴 **over budget**" if row.newly_over_budget else " · over budget (also in base)")
        text += f" ({_s(row.head_median_s)} > {row.budget_s:g} s)"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[Row]) -> list[str]:
    lines = ["| metric | base median s (n) | head median s (n) | Δ s | ratio | test | verdict | why |",
             "|---|---:|---:|---:|---:|---|---|---|"]
    for row in rows:
        test = "" if row.test is None else row.test + ("" if row.p_value is None else f" p={row.p_value:.3g}")
        lines.append(f"| {row.metric} | {_median_cell(row, 'base')} | {_median_cell(row, 'head')} | {_delta(row)} "
                     f"| {_ratio(row)} | {test} | {_verdict(row)} | {_cell(row.reason)} |")
    return lines


def _by_case(rows: Sequence[Row]) -> dict[CaseKey, list[Row]]:
    grouped: dict[CaseKey, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.case, []).append(row)
    return grouped


def _software(label: str, software: Mapping[str, object]) -> str:
    parts = [f"{k} {v}" for k, v in software.items() if v and k != "git_commit"]
    return f"{label}" + (f" ({', '.join(parts)})" if parts else "")


def _limits(t: Threshold) -> str:
    rel, floor_s, ratio = t.rel, t.floor_s, t.ratio_rel_or_rel
    few = f" (+{ratio * 100:.0f} % with fewer starts)" if ratio != rel else ""
    return f"+{rel * 100:.0f} %{few} and {floor_s:g} s"


def _rule(c: Comparison) -> str:
    cfg = c.config
    per = "; ".join(f"{m}: {_limits(t)}" for m, t in sorted(cfg.metrics.items()))
    return (f"A metric regresses when its head median exceeds the base median by more than "
            f"{_limits(cfg.default)}{f' (per metric: {per})' if per else ''}; with ≥ {cfg.min_samples} starts on "
            f"both sides a one-sided Mann–Whitney U test must also give p < {cfg.alpha:g}. A phase missing or a "
            f"start failing in the head is a regression. It is unchanged only when the starts could have shown "
            f"the threshold change with {cfg.power:.0%} power; otherwise undecided (exit "
            f"{0 if cfg.on_undecided == 'pass' else 2}). Thresholds: {cfg.source}.")


def render_markdown(c: Comparison) -> str:
    """The PR comment / step summary for *c*."""
    failing = c.failing_rows
    title = _title(c)
    if c.exit_code == 1:
        names = sorted({f"{r.metric}" for r in failing})
        title += f": {', '.join(names)}"
    out = [MARKER, f"## Cold-start comparison — {title}", "",
           f"**Base:** {_software(c.base, c.software[0])}  ", f"**Head:** {_software(c.head, c.software[1])}", ""]
    if c.problems:
        out += ["### Unusable input (exit 2)", ""] + [f"- {_cell(p)}" for p in c.problems] + [""]
    verdicts = c.cases
    for key, rows in _by_case(c.rows).items():
        attention = [r for r in rows if r.verdict != UNCHANGED or r.over_budget]
        calm = [r for r in rows if r not in attention]
        bad = sum(r.failing for r in rows)
        settle = _settle(rows) if verdicts.get(key) == UNDECIDED else ""
        out += [f"### {key.label} — {_CASE[verdicts.get(key, NOT_COMPARABLE)]}" + (f" ({bad} failing)" if bad else ""),
                ""] + ([f"Undecided: {_cell(settle)}.", ""] if settle else [])
        if attention:
            out += _table(attention) + [""]
        if calm:
            out += [f"<details><summary>{len(calm)} unchanged metric(s)</summary>", ""] + _table(calm) + \
                   ["", "</details>", ""]
    if c.notes:
        out += ["**Notes**", ""] + [f"- {_cell(n)}" for n in c.notes] + [""]
    out += [f"<sub>{_rule(c)}</sub>", ""]
    return "\n".join(out)


def render_text(c: Comparison, width: int = 140) -> str:
    """A terminal table for ``coldstart compare`` and the pytest summary."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=False)
    passing = " (on_undecided = \"pass\")" if c.verdict == UNDECIDED and c.exit_code == 0 else ""
    console.print(f"cold-start comparison: {c.status.upper()} (exit {c.exit_code}){passing}")
    console.print(f"  base: {_software(c.base, c.software[0])}")
    console.print(f"  head: {_software(c.head, c.software[1])}")
    for problem in c.problems:
        console.print(f"  unusable input: {problem}", markup=False)  # "[metrics.NAME]" is text, not a style
    verdicts = c.cases
    for key, rows in _by_case(c.rows).items():
        case = verdicts.get(key, NOT_COMPARABLE)
        settle = _settle(rows) if case == UNDECIDED else ""
        table = Table(title=f"{key.label}: {case.upper()}" + (f" ({settle})" if settle else ""), box=box.SIMPLE_HEAVY,
                      title_justify="left")
        add_columns(table, (("metric", "left"), ("base s (n)", "right"), ("head s (n)", "right"),
                           ("Δ s", "right"), ("ratio", "right"), ("verdict", "left"), ("why", "left")))
        for row in rows:
            verdict = row.verdict.upper() if row.failing or row.verdict == UNDECIDED else row.verdict
            if row.over_budget:
                verdict += " + OVER BUDGET" if row.newly_over_budget else " (over budget in base too)"
            table.add_row(row.metric if row.metric != CASE_ROW else "(whole case)", _median_cell(row, "base"),
                          _median_cell(row, "head"), _delta(row), _ratio(row), verdict, row.reason)
        console.print(table)
    for note in c.notes:
        console.print(f"  note: {note}", markup=False)
    return buffer.getvalue().rstrip("\n")


def append_step_summary(markdown: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to ``$GITHUB_STEP_SUMMARY`` when GitHub Actions sets it; return the path written."""
    target = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(safe_markdown(markdown).rstrip("\n") + "\n\n")
    return path


def safe_markdown(markdown: str) -> str:
    """*markdown* with this machine's secrets and any secret-shaped text masked (results written before a
    pattern existed, a URL password) before it is published."""
    return Redactor.from_env(os.environ).redact(markdown)


def write_markdown(path: Path, markdown: str) -> None:
    """Write the PR comment atomically (a workflow may read it while a retry writes), redacted."""
    atomic_write_text(path, safe_markdown(markdown))


def launchers_markdown(results: Sequence[RunResult]) -> str:
    """Per model, one row per launcher x optimization (the median run, as the comparison figure draws
    it): ready, TTFT and first token, and the three longest phases. Empty with fewer than two launchers.

    Where the first request started the server (Ray Serve scale-from-zero), ready *is* the first token
    and TTFT covers the phases; elsewhere the first token comes TTFT after ready.
    """
    from pytest_coldstart.report.figures import median_run, ttft_spans_phases

    runs = list(results)
    if len({r.launcher for r in runs}) < 2:
        return ""
    out = ["", "## Cold start across systems", "",
           "Median run per launcher x optimization. *first token* = ready + TTFT, or ready itself where the "
           "first request started the server (its TTFT spans the phases).", ""]
    for model in sorted({r.model for r in runs}):
        out += [f"### {model}", "", "| launcher | optimization | ok runs | ready s | TTFT s | first token s "
                "| longest phases |", "|---|---|---:|---:|---:|---:|---|"]
        groups: dict[tuple[str, str], list[RunResult]] = {}
        for r in runs:
            if r.model == model:
                groups.setdefault((r.launcher, r.optimization), []).append(r)
        for (launcher, optimization), group in sorted(groups.items()):
            chosen = median_run(group)
            ok = f"{sum(r.ok for r in group)}/{len(group)}"
            if chosen is None or chosen.total_ready_s is None:
                out.append(f"| {launcher} | {optimization} | {ok} | — | — | — | no successful run |")
                continue
            ttft = chosen.ttft_s
            first = (chosen.total_ready_s if ttft_spans_phases(chosen)
                     else None if ttft is None else chosen.total_ready_s + ttft)
            longest = sorted((p for p in chosen.phases if p.duration_s is not None), key=lambda p: -(p.duration_s or 0.0))[:3]
            phases = ", ".join(f"{p.name} {p.duration_s:.1f}" for p in longest)
            out.append(f"| {launcher} | {optimization} | {ok} | {chosen.total_ready_s:.2f} | {_s(ttft)} | {_s(first)} "
                       f"| {_cell(phases)} |")
        out.append("")
    return "\n".join(out)
