"""Pictures of cold starts (matplotlib, Agg): per-run waterfalls, per-model comparisons, efficiency.

Every function returns a ``FigureInfo`` whose ``bars`` are exactly what was
drawn, so tests (and the HTML report's tables) check the data, not pixels.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.registry import phase_rules
from pytest_coldstart.logs.timeline import PHASE_NAMES, SOURCE_LOG
from pytest_coldstart.model.efficiency import APPLIES_HOST_TO_GPU, format_gbps
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import atomic_path
from pytest_coldstart.model.result import RunResult
from pytest_coldstart.report.efficiency import median_efficiency

KIND_PHASE = "phase"  # measured interval (arrival stamps / harness)
KIND_REPORTED = "reported"  # vLLM's self-reported duration, drawn to end where the phase ended
KIND_GAP = "unaccounted"  # time between observed phases
KIND_TTFT = "ttft"  # first token, after ready
KIND_ACHIEVED = "achieved"
KIND_FLOOR = "floor"
KIND_FLOOR_H2D = "floor_host_to_gpu"  # pinned host->GPU copy: the floor for weights in RAM

_GAP_COLOUR = "#d62728"
_MIN_GAP_S = 1e-3  # rounding of stamps to the microsecond leaves sub-ms slivers


@dataclass(frozen=True)
class Bar:
    """One drawn bar: its row, what it shows, and where."""

    row: str
    label: str
    start_s: float
    duration_s: float
    kind: str


@dataclass(frozen=True)
class FigureInfo:
    """A written figure and the data it was drawn from."""

    path: Path
    title: str
    bars: tuple[Bar, ...]
    notes: tuple[str, ...] = ()

    def of_kind(self, kind: str) -> tuple[Bar, ...]:
        return tuple(b for b in self.bars if b.kind == kind)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("figures need matplotlib: pip install 'pytest-coldstart[report]'") from None
    matplotlib.use("Agg")  # no display on CI runners; must precede pyplot's import
    import matplotlib.pyplot as plt

    return plt


#: One colour per phase, none of them the gap's red or TTFT's black (the tab20 hues, reds left out).
_PHASE_COLOURS = ("#1f77b4", "#aec7e8", "#ff7f0e", "#17becf", "#2ca02c", "#98df8a", "#9467bd", "#c5b0d5",
                  "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#ffbb78", "#9edae5", "#c49c94", "#f7b6d2",
                  "#dbdb8d", "#c7c7c7",
                  # tab20b's darker hues: a cross-system figure (vllm, docker, ray-serve, a command server)
                  # has ~25 phases, and a repeated colour would make two phases look like one.
                  "#393b79", "#637939", "#8c6d31", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#a55194",
                  "#6b6ecf", "#b5cf6b", "#e7ba52", "#ce6dbd")


def phase_order(results: Sequence[RunResult]) -> tuple[str, ...]:
    """Phase names in the order their launchers declare them (``Launcher.phase_rules``), for the phases
    the results have; phases of a launcher this version does not know follow in order of appearance."""
    seen = tuple(dict.fromkeys(p.name for r in results for p in r.phases))
    declared: list[str] = []
    for launcher in dict.fromkeys(r.launcher for r in results):
        try:
            declared += [rule.name for rule in phase_rules(launcher)]
        except ConfigError:  # e.g. "ray-serve-llm" in results written before the launcher had its name
            continue
    ordered = [name for name in dict.fromkeys(declared) if name in seen]
    return tuple(ordered + [name for name in seen if name not in ordered]) or PHASE_NAMES


def phase_colour(name: str, order: Sequence[str] = PHASE_NAMES) -> str:
    index = list(order).index(name) if name in order else len(order)
    return _PHASE_COLOURS[index % len(_PHASE_COLOURS)]


def _save(fig: Any, path: Path) -> Path:
    """Write the PNG atomically (temp file + rename), then free the figure."""
    plt = _pyplot()
    try:
        with atomic_path(path, suffix=".png") as tmp:  # a figure is for sharing: 0644, whole or not at all
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (public for sibling figure modules, e.g. ``report.scaleout``)."""
    return _pyplot()


def save_figure(fig: Any, path: Path) -> Path:
    """Write *fig* as a PNG atomically and free it (public twin of ``_save``)."""
    return _save(fig, path)


def unaccounted_gaps(result: RunResult) -> list[tuple[float, float]]:
    """(start_s, end_s) of the time no observed phase covers, up to ready (or the last phase)."""
    spans = sorted((p.start_s, p.end_s) for p in result.phases
                   if p.duration_s is not None and p.start_s is not None and p.end_s is not None)
    horizon = result.total_ready_s if result.total_ready_s is not None else (spans[-1][1] if spans else 0.0)
    gaps, cursor = [], 0.0
    for start, end in spans:
        if start - cursor > _MIN_GAP_S:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if horizon - cursor > _MIN_GAP_S:
        gaps.append((cursor, horizon))
    return gaps


def run_title(result: RunResult) -> str:
    title = f"{result.model} / {result.optimization} / {result.launcher} r{result.repeat_index}"
    if not result.ok:
        return f"{title}: FAILED ({result.exit_status}), last phase {result.last_phase or 'none'}"
    ready = "ready not observed" if result.total_ready_s is None else f"ready in {result.total_ready_s:.1f} s"
    return f"{title}: {ready}, cache {result.cache_state}"


def waterfall(result: RunResult, path: Path) -> FigureInfo:
    """Gantt chart of one start: measured phases, vLLM's own durations, gaps, TTFT."""
    plt = _pyplot()
    bars: list[Bar] = []
    notes: list[str] = []
    for p in result.phases:
        if p.duration_s is None or p.start_s is None or p.end_s is None:
            notes.append(f"{p.name}: not observed" + (f" (vLLM reported {p.reported_s:.3g} s)"
                                                       if p.reported_s is not None else ""))
            continue
        bars.append(Bar(p.name, p.name, p.start_s, p.duration_s, KIND_PHASE))
        if p.reported_s is not None:
            bars.append(Bar(p.name, f"{p.name} (vLLM)", max(0.0, p.end_s - p.reported_s), p.reported_s,
                            KIND_REPORTED))
    for start, end in unaccounted_gaps(result):
        bars.append(Bar("unaccounted", "unaccounted", start, end - start, KIND_GAP))
    span = ttft_span(result)
    if span is not None:
        bars.append(Bar("ttft", "ttft", span[0], span[1], KIND_TTFT))

    order = phase_order([result])
    rows = [*order, "unaccounted", "ttft"]
    y = {row: i for i, row in enumerate(rows)}
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.8))
    end_s = max([b.start_s + b.duration_s for b in bars] + [result.total_ready_s or 0.0, 1e-3])
    visible = end_s * 0.004  # a 4 ms phase in a 90 s start still gets a sliver you can see
    for bar in bars:
        if bar.kind == KIND_REPORTED:
            ax.barh(y[bar.row] + 0.3, max(bar.duration_s, visible), left=bar.start_s, height=0.22, color="none",
                    edgecolor="black", hatch="////", linewidth=0.8)
            continue
        colour = {KIND_GAP: _GAP_COLOUR, KIND_TTFT: "black"}.get(bar.kind, phase_colour(bar.label, order))
        ax.barh(y[bar.row], max(bar.duration_s, visible), left=bar.start_s, height=0.5, color=colour,
                hatch="xx" if bar.kind == KIND_GAP else None, edgecolor="white" if bar.kind == KIND_GAP else None)
        if bar.kind == KIND_GAP:
            ax.axvspan(bar.start_s, bar.start_s + bar.duration_s, color=_GAP_COLOUR, alpha=0.08, linewidth=0)
    for row in rows:  # duration labels: measured, and vLLM's own where it has one
        measured = [b for b in bars if b.row == row and b.kind != KIND_REPORTED]
        reported = [b for b in bars if b.row == row and b.kind == KIND_REPORTED]
        if measured:
            total = sum(b.duration_s for b in measured)
            label = f"{total:.3g} s" + (f" in {len(measured)} gaps" if len(measured) > 1 else "")
            if reported:
                label += f"  (vLLM: {reported[0].duration_s:.3g} s)"
            last = max(b.start_s + max(b.duration_s, visible) for b in measured)
            ax.text(last + end_s * 0.006, y[row], label, va="center", fontsize=8)
        elif row in order:
            ax.text(end_s * 0.006, y[row], "not observed", va="center", fontsize=8, style="italic", color="grey")
    if result.total_ready_s is not None:
        ax.axvline(result.total_ready_s, color="black", linestyle="--", linewidth=0.8)
        ax.text(result.total_ready_s, -0.9, f" ready {result.total_ready_s:.1f} s", fontsize=8, va="bottom")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(len(rows) - 0.4, -1.0)
    ax.set_xlim(0, end_s * 1.18)
    sources = {p.source for p in result.phases if p.duration_s is not None}
    ax.set_xlabel("seconds from the log's first line (the log's own 1 s timestamps)" if SOURCE_LOG in sources
                  else "seconds since spawn (harness arrival stamps)")
    title = run_title(result)
    subtitle = f"started {result.started_at.split('.')[0]}"
    version = result.reported.get("vllm_version") or result.environment.get("vllm")
    if version:
        subtitle += f", vLLM {version}"
    if result.unaccounted_s is not None:
        subtitle += f", unaccounted {result.unaccounted_s:.2f} s"
    ax.set_title(f"{title}\n{subtitle}", fontsize=10, loc="left")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(facecolor="lightgrey", label="measured phase"),
                       Patch(facecolor="none", edgecolor="black", hatch="////", label="vLLM self-reported"),
                       Patch(facecolor=_GAP_COLOUR, hatch="xx", edgecolor="white", label="unaccounted gap"),
                       Patch(facecolor="black", label="TTFT (after ready)")],
              loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return FigureInfo(_save(fig, path), title, tuple(bars), tuple(notes))


def end_s(result: RunResult) -> float | None:
    """When the start ended: ready, or (a log without /health) the end of its last observed phase."""
    if result.total_ready_s is not None:
        return result.total_ready_s
    return max((p.end_s for p in result.phases if p.end_s is not None), default=None)


def ttft_spans_phases(result: RunResult) -> bool:
    """True where the first request is what started the server (Ray Serve scale-from-zero, serverless):
    its timeline ends at the first token (a ``first_token`` phase), so TTFT covers the phases."""
    return any(p.name == "first_token" and p.observed for p in result.phases)


def ttft_span(result: RunResult) -> tuple[float, float] | None:
    """(start_s, duration_s) of the first request on the start's time axis: after ready, or, where the
    request started the server, ending at ready (its ``total_ready_s`` is the first token)."""
    if result.ttft_s is None or result.total_ready_s is None:
        return None
    if ttft_spans_phases(result):
        start = max(0.0, result.total_ready_s - result.ttft_s)
        return start, result.total_ready_s - start
    return result.total_ready_s, result.ttft_s


def _row_end(bars: Sequence[Bar], row: str, skip: str) -> float:
    return max((b.start_s + b.duration_s for b in bars if b.row == row and b.kind != skip), default=0.0)


def median_run(runs: Sequence[RunResult]) -> RunResult | None:
    """The successful run with the median (low) end: its phases add up to its total, unlike medians of phases."""
    ends = [(end, r) for r in runs if r.ok and (end := end_s(r)) is not None]
    if not ends:
        return None
    target = statistics.median_low(end for end, _ in ends)
    return next(r for end, r in ends if end == target)


def comparison(results: Sequence[RunResult], path: Path) -> FigureInfo:
    """One model across optimizations: the median run of each as one bar of its phases, where they happened."""
    plt = _pyplot()
    models = {r.model for r in results}
    if len(models) != 1:
        raise ValueError(f"comparison() draws one model, got {sorted(models)}")
    groups: dict[str, list[RunResult]] = {}
    several = len({r.launcher for r in results}) > 1  # across systems every row names its launcher
    for r in results:
        groups.setdefault(f"{r.optimization}" + (f" ({r.launcher})" if several or r.launcher != "vllm" else ""),
                          []).append(r)
    bars: list[Bar] = []
    notes: list[str] = []
    ends: dict[str, str] = {}
    for row, runs in groups.items():
        chosen = median_run(runs)
        ok = sum(r.ok for r in runs)
        if chosen is None:
            notes.append(f"{row}: no successful run ({len(runs)} run(s))")
            continue
        notes.append(f"{row}: median of {ok} successful run(s)" + (f", {len(runs) - ok} failed" if ok < len(runs)
                                                                   else ""))
        for p in chosen.phases:
            if p.duration_s is not None and p.start_s is not None:
                bars.append(Bar(row, p.name, p.start_s, p.duration_s, KIND_PHASE))
        bars.extend(Bar(row, "unaccounted", a, b - a, KIND_GAP) for a, b in unaccounted_gaps(chosen))
        ttft = ttft_span(chosen)
        if ttft is not None:
            bars.append(Bar(row, "ttft", ttft[0], ttft[1], KIND_TTFT))
        last = chosen.last_phase or "?"
        ends[row] = (f"ready {chosen.total_ready_s:.1f} s" if chosen.total_ready_s is not None
                     else f"{end_s(chosen):.1f} s to end of {last} (no ready in the log)")
        if chosen.ttft_s is not None and chosen.total_ready_s is not None:
            ends[row] = (f"first token {chosen.total_ready_s:.1f} s (the first request started the server)"
                         if ttft_spans_phases(chosen) else
                         f"{ends[row]}, first token {chosen.total_ready_s + chosen.ttft_s:.1f} s")
    rows = [row for row in groups if any(b.row == row for b in bars)]
    order = phase_order(results)
    fig, ax = plt.subplots(figsize=(11, 0.7 * max(1, len(rows)) + 2.2))
    longest = max([b.start_s + b.duration_s for b in bars] + [1e-3])
    seen: set[str] = set()
    for bar in bars:
        colour = {KIND_GAP: _GAP_COLOUR, KIND_TTFT: "black"}.get(bar.kind, phase_colour(bar.label, order))
        if bar.kind == KIND_TTFT and bar.start_s + bar.duration_s <= _row_end(bars, bar.row, KIND_TTFT) + _MIN_GAP_S:
            # The first request started the server (Ray Serve scale-from-zero): TTFT spans the phases,
            # drawn as a thin bar under them, not after them.
            ax.barh(rows.index(bar.row) + 0.36, bar.duration_s, left=bar.start_s, height=0.1, color=colour,
                    label=None if bar.label in seen else bar.label)
            seen.add(bar.label)
            continue
        ax.barh(rows.index(bar.row), bar.duration_s, left=bar.start_s, height=0.6, color=colour,
                edgecolor="white", linewidth=0.5, hatch="xx" if bar.kind == KIND_GAP else None,
                label=None if bar.label in seen else bar.label)
        seen.add(bar.label)
        if bar.duration_s > longest * 0.05:
            ax.text(bar.start_s + bar.duration_s / 2, rows.index(bar.row), f"{bar.duration_s:.1f}", ha="center",
                    va="center", fontsize=7, color="white" if bar.kind != KIND_PHASE else "black")
    for i, row in enumerate(rows):
        end = max(b.start_s + b.duration_s for b in bars if b.row == row)
        ax.text(end + longest * 0.01, i, ends[row], va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlim(0, longest * 1.3)
    ax.set_xlabel("seconds since start (median run per launcher x optimization; phases + unaccounted gaps = "
                  "ready; black: time to first token)")
    model = next(iter(models))
    launchers = {r.launcher for r in results}
    title = f"{model}: cold start by " + ("launcher x optimization" if len(launchers) > 1 else "optimization")
    ax.set_title(title, fontsize=11, loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=7, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return FigureInfo(_save(fig, path), title, tuple(bars), tuple(notes))


def efficiency_chart(results: Sequence[RunResult], path: Path) -> FigureInfo | None:
    """Achieved load GB/s beside the floor GB/s per model x optimization (log scale); None if nothing to draw.

    Where a run has a host->GPU floor, it is a third bar, and the row's label is the % of the floor that
    applies (host->GPU when the weights were in the page cache): the gap to it is what a faster loader wins.
    """
    plt = _pyplot()
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(f"{r.model} / {r.optimization}" + (f" ({r.launcher})" if r.launcher != "vllm" else ""),
                          []).append(r)
    bars: list[Bar] = []
    labels: dict[str, str] = {}
    for row, runs in groups.items():
        eff = median_efficiency(runs)
        if eff is None or eff.achieved_gbps is None or (eff.floor_gbps is None and eff.host_to_gpu is None):
            continue
        bars.append(Bar(row, "achieved", 0.0, eff.achieved_gbps, KIND_ACHIEVED))
        if eff.floor_gbps is not None:
            name = "storage floor" if eff.host_to_gpu is not None else "floor"
            bars.append(Bar(row, f"{name} ({eff.floor_source})", 0.0, eff.floor_gbps, KIND_FLOOR))
            labels[row] = f"{eff.percent_of_floor:.3g}% of floor"
        if eff.host_to_gpu is not None:
            bars.append(Bar(row, f"host->GPU pinned ({eff.host_to_gpu.source})", 0.0, eff.host_to_gpu.pinned_gbps,
                            KIND_FLOOR_H2D))
            if eff.floor_applies == APPLIES_HOST_TO_GPU or eff.floor_gbps is None:
                labels[row] = f"{eff.percent_of_host_to_gpu:.3g}% of host->GPU"
            if eff.resident_share is not None:
                labels[row] += f"\n({100 * eff.resident_share:.0f}% in page cache)"
    if not bars:
        return None
    rows = list(labels)
    fig, ax = plt.subplots(figsize=(11, 0.8 * len(rows) + 1.8))
    three = any(b.kind == KIND_FLOOR_H2D for b in bars)
    offsets = {KIND_ACHIEVED: -0.24, KIND_FLOOR: 0.0, KIND_FLOOR_H2D: 0.24} if three else \
        {KIND_ACHIEVED: -0.18, KIND_FLOOR: 0.18}
    colours = {KIND_ACHIEVED: "#1f77b4", KIND_FLOOR: "#bbbbbb", KIND_FLOOR_H2D: "#2ca02c"}
    for bar in bars:
        i = rows.index(bar.row)
        offset = offsets[bar.kind]
        ax.barh(i + offset, bar.duration_s, height=0.22 if three else 0.34, color=colours[bar.kind])
        ax.text(bar.duration_s * 1.05, i + offset, f"{format_gbps(bar.duration_s)} GB/s {bar.label}", va="center",
                fontsize=8)
    for i, row in enumerate(rows):
        ax.text(1.01, i, labels[row], transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=9,
                weight="bold")
    ax.set_xscale("log")
    values = [b.duration_s for b in bars]
    ax.set_xlim(min(values) / 3, max(values) * 15)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("GB/s (log scale): weight bytes / load time, against the floor bandwidth of the source"
                  + (" and the pinned host->GPU copy (the floor for weights in the page cache)" if three else ""))
    title = "Weight load efficiency"
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3, which="both")
    return FigureInfo(_save(fig, path), title, tuple(bars))
