"""Report sections for what the probe, readiness levels and the profiler add (issue 14).

Each section appears only when the runs carry its data, so reports of older
results read as before.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from pytest_coldstart.model.result import RunResult

TOP_SHOWN = 5


def _median(values: Sequence[float | None]) -> float | None:
    seen = [v for v in values if v is not None]
    return statistics.median(seen) if seen else None


def sub_phase_lines(results: Sequence[RunResult]) -> list[str]:
    """``config: hf_config 8.03, imports:EngineCore 19.69, ...`` (medians over the runs that have them)."""
    lines = []
    parents = dict.fromkeys(k for r in results for k in r.sub_phases)
    for parent in parents:
        names = dict.fromkeys(p.name for r in results for p in r.sub_phases.get(parent, ()))
        parts = []
        for name in names:
            value = _median([next((p.duration_s for p in r.sub_phases.get(parent, ()) if p.name == name), None)
                             for r in results if parent in r.sub_phases])
            if value is not None:
                parts.append((name, value))
        parts.sort(key=lambda kv: -kv[1])
        lines.append(f"  {parent} sub-phases (s, probe): " + ", ".join(f"{n} {v:.2f}" for n, v in parts))
    return lines


def agreement_lines(results: Sequence[RunResult]) -> list[str]:
    """Where the probe, the log lines and vLLM's own figures disagree (over max(0.1 s, 3 %))."""
    with_probe = [r for r in results if r.phase_agreement is not None]
    if not with_probe:
        return []
    found = [d for r in with_probe for d in r.phase_agreement or ()]
    if not found:
        return [f"  phase agreement: probe, log lines and vLLM's figures agree in {len(with_probe)} run(s)"]
    return ["  phase agreement: disagreements over max(0.1 s, 3 %): " + "; ".join(
        # ``source`` says who timed the inside value: the probe's wrappers, or vLLM's OpenTelemetry span.
        f"{d['name']} {'span' if d.get('source') == 'otel' else 'probe'} {d['plugin_s']:.2f} vs {d['other']} "
        f"{d['other_s']:.2f}" for d in found)]


def readiness_lines(results: Sequence[RunResult]) -> list[str]:
    checked = [r.correct for r in results if r.readiness.get("correct")]
    warm = [r.warm_s for r in results if r.readiness.get("warm")]
    if not checked and not warm:
        return []
    parts = []
    if checked:
        parts.append(f"correct {sum(c is True for c in checked)}/{len(checked)}"
                     + (f", wrong {sum(c is False for c in checked)}" if any(c is False for c in checked) else "")
                     + (f", no oracle {sum(c is None for c in checked)}" if any(c is None for c in checked) else ""))
    median = _median(warm)
    if warm:
        parts.append("warm_s " + ("never settled" if median is None else f"{median:.2f} (median)"))
    return ["  readiness: " + ", ".join(parts)]


def profile_lines(results: Sequence[RunResult], top: int = TOP_SHOWN) -> list[str]:
    """Top functions by self time per phase, from the latest profiled run."""
    profiled = [r for r in results if r.profile]
    if not profiled:
        return []
    profile = profiled[-1].profile
    if profile is None:
        return []
    if profile.error is not None:
        return [f"  profile: {profile.error}"]
    lines = [f"  profile ({profile.rate_hz} Hz, {profile.processes} processes): {profile.speedscope}"]
    for phase, rows in profile.top_by_phase.items():
        if rows:
            lines.append(f"    {phase}: " + ", ".join(f"{function} {self_s:.2f}s" for function, self_s in rows[:top]))
    return lines


def inside_notes(results: Sequence[RunResult]) -> str:
    """Every section that has data, one line each (empty when none has)."""
    lines = sub_phase_lines(results) + agreement_lines(results) + readiness_lines(results) + profile_lines(results)
    return "\n".join(lines)


def _mean_top(results: Sequence[RunResult]) -> dict[str, list[dict[str, Any]]]:
    """Per phase, each function's self time averaged over the profiled runs."""
    profiled = [r.profile for r in results if r.profile and "top_by_phase" in r.profile]
    sums: dict[str, dict[str, float]] = {}
    for profile in profiled:
        for phase, rows in profile.top_by_phase.items():
            for function, self_s in rows:
                sums.setdefault(phase, {}).setdefault(function, 0.0)
                sums[phase][function] += self_s / len(profiled)
    return {phase: [{"function": f, "self_s": s} for f, s in funcs.items()] for phase, funcs in sums.items()}


def profile_growth_lines(base: Sequence[RunResult], head: Sequence[RunResult], phases: Sequence[str]) -> list[str]:
    """For each flagged phase, the functions whose self time grew most from base to head (profiled runs only)."""
    from pytest_coldstart.measure.profile import grown_functions

    before, after = _mean_top(base), _mean_top(head)
    if not before or not after:
        return []
    lines = []
    for phase in phases:
        grown = grown_functions(before, after, phase)
        if grown:
            lines.append(f"- `{phase}`: " + ", ".join(f"`{g['function']}` +{g['grew_s']:.2f} s" for g in grown))
    return (["", "Functions whose self time grew most in the flagged phases (py-spy, --coldstart-profile):"] + lines
            if lines else [])
