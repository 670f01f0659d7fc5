"""The scale-out figure: offered load, replicas and TTFT on one time axis, each replica's cold start as a span.

Four panels share the run's time axis (seconds since the first load step):

* load: offered rate per stair step (a step line), achieved rate (dots), the
  fixed-concurrency probes shaded;
* replicas: RUNNING replicas from ``serve.status()`` (a step line, whole replicas);
* cold starts: one lane per replica on its own axis, its cold start from the
  autoscaling decision to the first request it served, drawn as its phases
  (same colours as the waterfalls);
* TTFT: every request's TTFT (small dots), each step's p95 (a bar), the SLO.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.logs.ray import RAY_PHASE_NAMES
from pytest_coldstart.model.scaleout import CAUSE_REPLACEMENT, ScaleoutResult
from pytest_coldstart.report.figures import phase_colour, pyplot, save_figure


@dataclass(frozen=True)
class Span:
    """One drawn piece of a replica's cold start."""

    replica: int
    phase: str
    start_s: float
    duration_s: float


@dataclass(frozen=True)
class ScaleoutFigure:
    path: Path
    title: str
    spans: tuple[Span, ...]
    offered: tuple[tuple[float, float, float], ...]  # (start_s, end_s, rate_rps)
    replicas: tuple[tuple[float, int], ...]
    ttft_p95: tuple[tuple[float, float, float], ...]  # (start_s, end_s, p95_s)
    #: The tick labels as drawn: the replica-count axis and the lanes' own axis.
    replica_ticks: tuple[str, ...] = ()
    lane_ticks: tuple[str, ...] = ()


def replica_spans(result: ScaleoutResult) -> tuple[Span, ...]:
    spans = []
    for replica in result.replicas:
        for phase in replica.phases:
            if phase.start_s is not None and phase.duration_s:
                spans.append(Span(replica.index + 1, phase.name, phase.start_s, phase.duration_s))
    return tuple(spans)


def scaleout_figure(result: ScaleoutResult, path: Path) -> ScaleoutFigure:
    plt = pyplot()
    rows = max((r.index + 1 for r in result.replicas), default=0)
    # The replicas' phase lanes get their own axis (categorical rows, "replica N" ticks): drawn on the
    # replica-count axis they sat at y = -1 and below, under tick labels "0", "-1".
    fig, (ax_load, ax_rep, ax_lanes, ax_ttft) = plt.subplots(
        4, 1, figsize=(11, 9.5 + 0.25 * max(rows - 2, 0)), sharex=True,
        gridspec_kw={"height_ratios": [1, 1, 0.45 * max(rows, 1) + 0.5, 1.4]})
    steps = [s for s in result.steps if s.kind == "step"]
    offered = tuple((s.start_s, s.end_s, s.rate_rps or 0.0) for s in steps)
    for start, end, rate in offered:
        ax_load.hlines(rate, start, end, colors="#1f77b4", linewidth=2.5)
    for s in steps:
        if s.achieved_rps is not None:
            ax_load.plot([(s.start_s + s.end_s) / 2], [s.achieved_rps], "o", color="#ff7f0e", markersize=5)
    for s in result.steps:
        if s.kind == "probe":
            for ax in (ax_load, ax_ttft):
                ax.axvspan(s.start_s, s.end_s, color="#dddddd", alpha=0.5, linewidth=0)
            ax_load.text((s.start_s + s.end_s) / 2, 0.02, f"probe {s.replicas_start}r\n{s.achieved_rps or 0:.2f} req/s",
                         ha="center", va="bottom", fontsize=7, transform=ax_load.get_xaxis_transform())
    ax_load.plot([], [], color="#1f77b4", linewidth=2.5, label="offered (req/s)")
    ax_load.plot([], [], "o", color="#ff7f0e", label="achieved (req/s)")
    ax_load.set_ylabel("req/s")
    ax_load.legend(loc="upper left", fontsize=8)

    # Replicas RUNNING over time (whole replicas: integer ticks from 0).
    timeline = [(t, running) for t, running, _ in result.replica_timeline]
    end_x = max([s.end_s for s in result.steps] + [t for t, _ in timeline] + [0.0])
    if timeline:
        xs = [t for t, _ in timeline] + [end_x]
        ys = [n for _, n in timeline] + [timeline[-1][1]]
        ax_rep.step(xs, ys, where="post", color="black", linewidth=2, label="replicas RUNNING")
    top = max([n for _, n in timeline] + [1])
    ax_rep.set_ylim(0, top + 0.6)
    ax_rep.set_yticks(range(0, top + 1))
    ax_rep.set_ylabel("replicas")
    ax_rep.legend(loc="upper left", fontsize=8)

    # One lane per replica: its cold start from the autoscaling decision to its first request, by phase.
    spans = replica_spans(result)
    order = list(RAY_PHASE_NAMES)
    seen: set[str] = set()
    for span in spans:
        ax_lanes.barh(span.replica, span.duration_s, left=span.start_s, height=0.6,
                      color=phase_colour(span.phase, order), edgecolor="white", linewidth=0.3,
                      label=None if span.phase in seen else span.phase)
        seen.add(span.phase)
    for replica in result.replicas:
        note = None
        if replica.failed_s is not None:
            note = "failed, replaced"
        elif replica.cause == CAUSE_REPLACEMENT:
            note = "replacement" + (f", {replica.replica_add_s:.0f} s" if replica.replica_add_s is not None else "")
        elif replica.scaled_out and replica.replica_add_s is not None:
            note = f"add {replica.replica_add_s:.0f} s"
        if note is not None:
            ax_lanes.text(replica.decision_s if replica.decision_s is not None else 0.0, replica.index + 1 - 0.42,
                          note, fontsize=7, va="bottom")
    ax_lanes.set_yticks(range(1, rows + 1), [f"replica {n}" for n in range(1, rows + 1)], fontsize=8)
    ax_lanes.set_ylim(rows + 0.6, 0.4)  # replica 1 on top
    ax_lanes.set_ylabel("cold starts")
    if seen:
        ax_lanes.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, title="phase", title_fontsize=7)

    for s in result.steps:
        if s.requests:
            ax_ttft.plot([sent for sent, _ in s.requests], [t for _, t in s.requests], ".",
                         color="#9edae5", markersize=2)
    ttft_p95 = tuple((s.start_s, s.end_s, s.ttft_p95_s) for s in result.steps if s.ttft_p95_s is not None)
    for start, end, p95 in ttft_p95:
        ax_ttft.hlines(p95, start, end, colors="#d62728", linewidth=2.5)
    slo = result.profile.get("ttft_slo_s")
    if slo:
        ax_ttft.axhline(slo, color="grey", linestyle="--", linewidth=1, label=f"SLO {slo:g} s")
    ax_ttft.plot([], [], color="#d62728", linewidth=2.5, label="TTFT p95 per step")
    ax_ttft.plot([], [], ".", color="#9edae5", label="TTFT per request")
    ax_ttft.set_ylabel("TTFT (s)")
    ax_ttft.set_xlabel("seconds since the first load step")
    ax_ttft.legend(loc="upper left", fontsize=8)
    title = (f"{result.model}: scale-out under load ({result.load_generator.get('name')}), "
             f"max replicas reached {result.max_replicas_reached}"
             + (f", replica_add_s {result.replica_add_s:.0f} s" if result.replica_add_s is not None else ""))
    fig.suptitle(title, fontsize=10)
    fig.canvas.draw()  # tick labels are laid out at draw time
    replica_ticks = tuple(label.get_text() for label in ax_rep.get_yticklabels())
    lane_ticks = tuple(label.get_text() for label in ax_lanes.get_yticklabels())
    save_figure(fig, path)
    return ScaleoutFigure(path, title, spans, offered, tuple(timeline), tuple((a, b, c) for a, b, c in ttft_p95),
                          replica_ticks, lane_ticks)


def scaleout_table(results: Sequence[ScaleoutResult]) -> list[dict[str, Any]]:
    """One row per step of every run: what ``coldstart report`` prints beside the figure."""
    rows = []
    for result in results:
        for s in result.steps:
            rows.append({"run": result.run_id, "step": s.label, "rate_rps": s.rate_rps, "replicas":
                         f"{s.replicas_start}->{s.replicas_end}", "achieved_rps": s.achieved_rps,
                         "ttft_p50_s": s.ttft_p50_s, "ttft_p95_s": s.ttft_p95_s, "ttft_p99_s": s.ttft_p99_s,
                         "completed": s.completed, "failed": s.failed, "slo_attainment": s.slo_attainment})
    return rows
