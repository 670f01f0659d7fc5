"""Load efficiency for people: the summary line, the PR table, medians over repeats.

The values and the pure assessment live in ``model.efficiency``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace

from pytest_coldstart.model.case import group_by_case
from pytest_coldstart.model.efficiency import (
    APPLIES_HOST_TO_GPU,
    APPLIES_STORAGE,
    LoadEfficiency,
    format_bytes,
    format_gbps,
)
from pytest_coldstart.model.result import RunResult


def _ok_with_efficiency(results: Sequence[RunResult]) -> list[LoadEfficiency]:
    return [r.efficiency for r in results if r.ok and r.efficiency is not None]


def median_efficiency(results: Sequence[RunResult]) -> LoadEfficiency | None:
    """The efficiency of a group of repeats: median load time, the floor of the last run.

    None when no successful run recorded one (results from before efficiency
    was recorded, or only failed runs).
    """
    found = _ok_with_efficiency(results)
    if not found:
        return None
    timed = [e for e in found if e.load_s is not None]
    if not timed:
        return found[-1]
    floored = [e for e in timed if e.floor_gbps is not None or e.host_to_gpu is not None]
    base = floored[-1] if floored else timed[-1]
    shares = [e.resident_share for e in timed if e.resident_share is not None]
    return replace(base, load_s=statistics.median(e.load_s for e in timed if e.load_s is not None),
                   resident_share=statistics.median(shares) if shares else None)


def efficiency_line(results: Sequence[RunResult]) -> str:
    """The line under the terminal summary's phase table ("" if nothing recorded)."""
    eff = median_efficiency(results)
    if eff is None:
        return ""
    timed = sum(1 for e in _ok_with_efficiency(results) if e.load_s is not None)
    prefix = f"median of {timed} runs: " if timed > 1 else ""
    return f"  {prefix}{eff.describe()}"


def _floor_cells(eff: LoadEfficiency) -> tuple[str, str, str, str, str, str]:
    """Bytes, time, achieved GB/s, floor (source), floor s, % of floor: the markdown cells of one efficiency."""
    floor = "-" if eff.floor_gbps is None else f"{format_gbps(eff.floor_gbps)} ({eff.floor_source})"
    took = "not observed" if eff.load_s is None else f"{eff.load_s:.3g}"
    pct = "-" if eff.percent_of_floor is None else f"{eff.percent_of_floor:.3g}%"
    floor_s = "-" if eff.floor_s is None else f"{eff.floor_s:.3g}"
    return format_bytes(eff.weight_bytes), took, format_gbps(eff.achieved_gbps), floor, floor_s, pct


def host_to_gpu_cells(eff: LoadEfficiency | None) -> tuple[str, str, str, str, str]:
    """(in page cache, host->GPU pinned GB/s (source), host->GPU floor s, % of host->GPU, floor that applies)."""
    if eff is None:
        return "-", "-", "-", "-", "-"
    resident = "-" if eff.resident_share is None else f"{100 * eff.resident_share:.0f}%"
    h2d = eff.host_to_gpu
    if h2d is None:
        floor = eff.host_to_gpu_note or "-"
        floor_s = pct = "-"
    else:
        floor = f"{format_gbps(h2d.pinned_gbps)} ({h2d.source})"
        floor_s = "-" if eff.host_to_gpu_s is None else f"{eff.host_to_gpu_s:.3g}"
        pct = "-" if eff.percent_of_host_to_gpu is None else f"{eff.percent_of_host_to_gpu:.3g}%"
    applies = {APPLIES_HOST_TO_GPU: "host->GPU", APPLIES_STORAGE: "storage"}.get(eff.floor_applies or "", "-")
    return resident, floor, floor_s, pct, applies


def any_host_to_gpu(results: Sequence[RunResult]) -> bool:
    """Whether any run was assessed against a host->GPU floor (the extra columns are shown only then)."""
    return any(e.host_to_gpu is not None for e in _ok_with_efficiency(results))


def host_to_gpu_notes(results: Sequence[RunResult]) -> list[str]:
    """Why runs have no host->GPU floor ("no CUDA device (not probed)"), each reason once."""
    return sorted({e.host_to_gpu_note for e in _ok_with_efficiency(results)
                   if e.host_to_gpu is None and e.host_to_gpu_note})


def efficiency_markdown(results: Sequence[RunResult]) -> str:
    """A PR-comment table: one row per model x optimization x launcher, medians over repeats.

    Where a run has a host->GPU floor, four more columns put the achieved GB/s against it too (page-cache
    residency, pinned GB/s, % of it, which floor applies); without one the table is as before, plus a line
    saying why there is none.
    """
    groups = group_by_case(results)
    h2d = any_host_to_gpu(results)
    extra_head = (" in page cache | host->GPU pinned GB/s (source) | host->GPU floor s | % of host->GPU "
                  "| floor that applies |") if h2d else ""
    lines = ["| model | optimization | launcher | weights | load s | load at GB/s | floor GB/s (source) "
             "| floor s | % of floor |" + extra_head,
             "|---|---|---|---:|---:|---:|---|---:|---:|" + ("---:|---|---:|---:|---|" if h2d else "")]
    notes: list[str] = []
    for key, runs in groups.items():
        model, opt, launcher = key.astuple()
        eff = median_efficiency(runs)
        extra = (" " + " | ".join(host_to_gpu_cells(eff)) + " |") if h2d else ""
        if eff is None:
            lines.append(f"| {model} | {opt} | {launcher} | - | not recorded | - | - | - | - |{extra}")
            continue
        lines.append(f"| {model} | {opt} | {launcher} | {' | '.join(_floor_cells(eff))} |{extra}")
        if eff.note:
            notes.append(f"{model}/{opt}/{launcher}: {eff.note}")
        elif eff.load_basis:
            h2d_detail = "" if eff.host_to_gpu is None else \
                f"; host->GPU floor: {eff.host_to_gpu.detail or eff.host_to_gpu.source}"
            scope = f" [{eff.load_scope}]" if eff.load_scope else ""
            notes.append(f"{model}/{opt}/{launcher}: load time from the {eff.load_basis}{scope}; "
                         f"floor: {eff.floor_detail or eff.floor_source}{h2d_detail}")
    if len(lines) == 2:
        return ""
    notes += [f"host->GPU floor: {why}" for why in host_to_gpu_notes(results)]
    title = ("weights / load time vs the storage floor of the source and the host->GPU floor (weights in RAM)"
             if h2d else "weights / load time vs the floor bandwidth of the source")
    text = f"**Load efficiency** ({title})\n\n" + "\n".join(lines)
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text + "\n"


# The registry as a source with a floor (docker starts: ``RunResult.pull_efficiency``).

def describe_pull(eff: LoadEfficiency) -> str:
    """``image pull at X GB/s = Y% of registry floor Z GB/s`` in words, or why it can't be said."""
    if eff.load_s is None:
        return f"image pull: {eff.note or 'not observed'}"
    if eff.achieved_gbps is None:
        return f"image pull in {eff.load_s:.3g} s; no rate ({eff.note})"
    text = f"image pull at {format_gbps(eff.achieved_gbps)} GB/s"
    if eff.percent_of_floor is None:
        return f"{text}; no registry floor ({eff.note})"
    return (f"{text} = {eff.percent_of_floor:.3g}% of registry floor {format_gbps(eff.floor_gbps)} GB/s "
            f"(source: {eff.floor_source}); {format_bytes(eff.weight_bytes)} on the wire in {eff.load_s:.3g} s "
            f"({eff.load_basis})")


def median_pull_efficiency(results: Sequence[RunResult]) -> LoadEfficiency | None:
    """The pull efficiency of a group of repeats: median pull time, the floor of the last run."""
    found = [r.pull_efficiency for r in results if r.ok and r.pull_efficiency is not None]
    if not found:
        return None
    timed = [e for e in found if e.load_s is not None]
    if not timed:
        return found[-1]
    floored = [e for e in timed if e.floor_gbps is not None]
    base = floored[-1] if floored else timed[-1]
    return replace(base, load_s=statistics.median(e.load_s for e in timed if e.load_s is not None))


def pull_efficiency_line(results: Sequence[RunResult]) -> str:
    """The image-pull line under the summary's phase table, next to the weights' ("" if no docker start)."""
    eff = median_pull_efficiency(results)
    if eff is None:
        return ""
    timed = sum(1 for r in results if r.ok and r.pull_efficiency is not None and r.pull_efficiency.load_s)
    prefix = f"median of {timed} runs: " if timed > 1 else ""
    return f"  {prefix}{describe_pull(eff)}"


def pull_efficiency_markdown(results: Sequence[RunResult]) -> str:
    """A PR-comment table of docker starts' image pulls against the registry's floor ("" if none)."""
    lines = ["| model | optimization | launcher | bytes on the wire | pull s | pull at GB/s | "
             "registry floor GB/s (source) | floor s | % of floor |",
             "|---|---|---|---:|---:|---:|---|---:|---:|"]
    notes: list[str] = []
    for key, runs in group_by_case(results).items():
        eff = median_pull_efficiency(runs)
        if eff is None:
            continue
        model, opt, launcher = key.astuple()
        lines.append(f"| {model} | {opt} | {launcher} | {' | '.join(_floor_cells(eff))} |")
        if eff.note:
            notes.append(f"{model}/{opt}/{launcher}: {eff.note}")
        elif eff.floor_detail:
            notes.append(f"{model}/{opt}/{launcher}: floor: {eff.floor_detail}")
    if len(lines) == 2:
        return ""
    text = ("**Image pull efficiency** (compressed layer bytes / image_pull time vs the registry's floor)\n\n"
            + "\n".join(lines))
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text + "\n"
