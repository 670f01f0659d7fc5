"""Readable tables: per-case phase summary, budget breaches, offline timelines."""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence

from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Table

from pytest_coldstart.logs.timeline import PHASE_NAMES, Timeline
from pytest_coldstart.model.budgets import OVER, BudgetCheck, Budgets, check_budgets
from pytest_coldstart.model.result import RunResult
from pytest_coldstart.model.scaleout import ScaleoutResult
from pytest_coldstart.report.efficiency import efficiency_line, pull_efficiency_line
from pytest_coldstart.report.inside import inside_notes
from pytest_coldstart.report.ray import ray_notes


def add_columns(table: Table, columns: Sequence[tuple[str, JustifyMethod]]) -> None:
    """The table's columns, each (header, justify)."""
    for column, justify in columns:
        table.add_column(column, justify=justify)


NOT_OBSERVED = "not observed"


def _render(table: Table, width: int = 120) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=False).print(table)
    return buffer.getvalue().rstrip("\n")


def _s(value: float | None) -> str:
    return NOT_OBSERVED if value is None else f"{value:.2f}"


def _median(values: Sequence[float | None]) -> tuple[float | None, str]:
    seen = [v for v in values if v is not None]
    if not seen:
        return None, ""
    spread = f"{min(seen):.2f}-{max(seen):.2f}" if len(seen) > 1 else ""
    if len(seen) < len(values):
        spread = f"{spread} (seen {len(seen)}/{len(values)})".strip()
    return statistics.median(seen), spread


def render_summary(results: Sequence[RunResult], budgets: Budgets | None = None) -> str:
    """One phase table for the runs of one (model, optimization, launcher): medians over repeats."""
    ok = [r for r in results if r.ok]
    first = results[0]
    title = (f"{first.model} / {first.optimization} / {first.launcher}: "
             f"{len(ok)} of {len(results)} run(s) ok, cache {first.cache_state}")
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    add_columns(table, (("phase", "left"), ("median s", "right"), ("range s", "right"),
                       ("vLLM reported s", "right"), ("budget s", "right"), ("status", "left")))
    if not ok:
        table.add_row("(no successful run)", "", "", "", "", first.error.splitlines()[0] if first.error else "")
        return _render(table)
    limits = budgets.for_case(first.model, first.optimization, first.launcher) if budgets else {}
    checks = [check_budgets(budgets, r) if budgets else [] for r in ok]

    def status(name: str) -> str:
        rows = [c for run_checks in checks for c in run_checks if c.name == name]
        if any(c.status == OVER for c in rows):
            return f"OVER in {sum(c.status == OVER for c in rows)}/{len(ok)}"
        return "ok" if name in limits and rows else ("unbudgeted" if name not in limits else "")

    # A launcher's own phase table (ray-serve: scheduling, replica init, ...).
    for name in tuple(dict.fromkeys(p.name for r in ok for p in r.phases)) or PHASE_NAMES:
        median, spread = _median([r.phase_durations().get(name) for r in ok])
        reported, _ = _median([next((p.reported_s for p in r.phases if p.name == name), None) for r in ok])
        table.add_row(name, _s(median), spread, "" if reported is None else f"{reported:.2f}",
                      _budget(limits.get(name)), status(name) if median is not None else "")
    for name, values in (("unaccounted", [r.unaccounted_s for r in ok]),
                         ("total_ready_s", [r.total_ready_s for r in ok]),
                         ("ttft_s", [r.ttft_s for r in ok]),
                         ("first_response_s", [r.first_response_s for r in ok])):
        median, spread = _median(values)
        table.add_row(name, _s(median), spread, "", _budget(limits.get(name)),
                      status(name) if name in ("total_ready_s", "ttft_s") else "", end_section=name == "unaccounted")
    text = _render(table)
    cache_notes = {str(r.reported.get("compile_cache_detail")) for r in ok if r.reported.get("compile_cache_detail")}
    for note in sorted(cache_notes):
        text += f"\n  torch.compile cache: {note}"
    for note in ray_notes(ok):
        text += f"\n  {note}"
    line = efficiency_line(ok)
    text = f"{text}\n{line}" if line else text
    pull = pull_efficiency_line(ok)  # docker starts: the registry as a source with a floor
    text = f"{text}\n{pull}" if pull else text
    inside = inside_notes(ok)  # sub-phases, phase agreement, readiness, profile: only when the runs have them
    return f"{text}\n{inside}" if inside else text


def _budget(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def render_breaches(checks: Sequence[BudgetCheck], title: str) -> str:
    """The failure message of a budget breach: every over-budget row, plus the rest."""
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    add_columns(table, (("phase", "left"), ("budget s", "right"), ("measured s", "right"),
                       ("over by s", "right"), ("status", "left")))
    for check in sorted(checks, key=lambda c: c.status != OVER):
        over = check.over_by_s
        table.add_row(check.name, _budget(check.budget_s), _s(check.measured_s) if check.measured_s is not None
                      else NOT_OBSERVED, "" if over is None else f"+{over:.2f}", check.status.upper()
                      if check.status == OVER else check.status)
    return _render(table)


def render_timeline(timeline: Timeline, title: str = "") -> str:
    """The phases of one start as a table (``coldstart timeline``)."""
    table = Table(title=title or None, box=box.SIMPLE_HEAVY, title_justify="left")
    add_columns(table, (("phase", "left"), ("start s", "right"), ("end s", "right"),
                       ("duration s", "right"), ("vLLM reported s", "right"), ("source", "left")))
    for p in timeline.phases:
        # A phase that also covers one its vLLM logs no line for says so (Phase.includes).
        name = p.name + (f" (+{', '.join(p.includes)})" if p.includes else "")
        table.add_row(name, "" if p.start_s is None else f"{p.start_s:.2f}",
                      "" if p.end_s is None else f"{p.end_s:.2f}", _s(p.duration_s),
                      "" if p.reported_s is None else f"{p.reported_s:.2f}", p.source)
        for part in timeline.sub_phases.get(p.name, ()):
            table.add_row(f"  - {part.name}", "" if part.start_s is None else f"{part.start_s:.2f}",
                          "" if part.end_s is None else f"{part.end_s:.2f}", _s(part.duration_s),
                          "" if part.reported_s is None else f"{part.reported_s:.2f}", part.source)
    table.add_row("unaccounted", "", "", "" if timeline.unaccounted_s is None else f"{timeline.unaccounted_s:.2f}",
                  "", "", end_section=True)
    table.add_row("total_ready_s", "", "", _s(timeline.total_ready_s) if timeline.total_ready_s is not None
                  else "not observed (no /health line in the log)", "",
                  "offline: last startup line" if timeline.offline else "")
    lines = [_render(table)]
    reported = {k: v for k, v in timeline.reported.items() if v is not None}
    if reported:
        lines.append("vLLM self-reported: " + ", ".join(f"{k}={v}" for k, v in reported.items()))
    if timeline.failure is not None:
        lines.append(f"start failed during {timeline.failed_in}: {timeline.failure}")
    return "\n".join(lines)


def render_scaleout_summary(result: ScaleoutResult) -> str:
    """One scale-out run: its steps (offered vs achieved load, replicas, TTFT) and the replica it added."""
    added = result.added_replica
    title = (f"{result.model} / scale-out ({result.run_id}): {result.exit_status}, "
             f"replicas up to {result.max_replicas_reached}, replica_add_s {_s(result.replica_add_s)}")
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for name in ("step", "offered load", "achieved req/s", "replicas", "TTFT p50 s", "TTFT p95 s", "TTFT p99 s",
                 "ok", "failed", "SLO attained"):
        table.add_column(name, justify="left" if name == "step" else "right", no_wrap=name == "offered load")

    def num(value: float | None, fmt: str = ".2f") -> str:
        return NOT_OBSERVED if value is None else format(value, fmt)

    for step in result.steps:
        offered = (f"{step.max_concurrency} in flight" if step.kind == "probe" and step.max_concurrency
                   else f"{num(step.rate_rps, '.1f')} req/s")
        table.add_row(step.label, offered, num(step.achieved_rps), f"{step.replicas_start}->"
                      f"{step.replicas_end}", num(step.ttft_p50_s), num(step.ttft_p95_s), num(step.ttft_p99_s),
                      str(step.completed), str(step.failed), num(step.slo_attainment, ".0%"))
    lines = [_render(table)]
    if added is not None:
        phases = ", ".join(f"{p.name} {_s(p.duration_s)}" + (" s" if p.duration_s is not None else "")
                           for p in added.phases) or "phases not observed"
        lines.append(f"  replica {added.index + 1} added in {_s(added.replica_add_s)} s (decision -> first request "
                     f"served): {phases}")
    for replica in result.replicas:
        if replica.failed_s is not None:
            lines.append(f"  replica {replica.index + 1} failed at {replica.failed_s:.1f} s and was replaced "
                         "(the controller's exception is in the driver log)")
    if result.throughput_by_replicas:
        through = ", ".join(f"{n} replica(s) {rps:.2f} req/s" for n, rps in sorted(result.throughput_by_replicas.items()))
        eff = "" if result.scaling_efficiency is None else f"; efficiency vs linear {result.scaling_efficiency:.0%}"
        lines.append(f"  throughput at fixed concurrency: {through}{eff}")
    if result.error:
        lines.append(f"  error: {result.error}")
    return "\n".join(lines)
