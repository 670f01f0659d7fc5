"""The live timeline built from markers collected on arrival (each line parsed once) is the timeline a full
re-parse of the same lines gives, on every captured vLLM log, before and after ready."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coldstart.launch import process as owned
from pytest_coldstart.launch.process import StampedLog
from pytest_coldstart.logs.timeline import StampedLine, timeline_from_events, timeline_from_stamped
from tests.conftest import DATA

LOGS = sorted((DATA / "vllm-cpu").glob("*.log"))


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_markers_collected_on_arrival_give_the_reparsed_timeline(path: Path) -> None:
    log = StampedLog()
    lines = path.read_text().splitlines()
    for i, text in enumerate(lines):
        log._append(StampedLine(i * 0.01, text))
    for ready_s in (None, len(lines) * 0.005, len(lines) * 0.01):
        live = timeline_from_events(log.marker_events(ready_s), ready_s=ready_s)
        assert live == timeline_from_stamped(log.lines(), ready_s=ready_s)


def test_past_the_budget_only_markers_and_the_tail_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owned, "KEEP_BYTES", 1000)
    monkeypatch.setattr(owned, "TAIL_LINES", 3)
    log = StampedLog()
    texts = ["x" * 400 for _ in range(5)] + ["INFO 11-22 04:53:18 [loader.py:1] Loading weights took 1.50 seconds"] + \
        [f"y{i}" for i in range(10)]
    for i, text in enumerate(texts):
        log._append(StampedLine(float(i), text))
    kept = [line.text for line in log.lines()]
    assert kept == texts[:3] + [texts[5]] + texts[-3:]  # the head up to the budget, the marker line, the tail
    assert log.dropped_lines == len(texts) - 3 - 1
    assert log.tail(2) == tuple(texts[-2:])
    assert "weights_loaded" in log.marker_events()
