"""The scale-out series is recorded by the cold-start history's own writer (``asv_store.write_series``): samples
append per commit, both series live side by side in their own files, and ``load_commit`` reads both back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_coldstart.history import asv_store
from pytest_coldstart.history.commits import Commit
from pytest_coldstart.history.samples import scaleout_metrics
from pytest_coldstart.history.scaleout import record_scaleout
from pytest_coldstart.model.result import load_results
from pytest_coldstart.model.scaleout import load_scaleouts
from tests.conftest import DATA

pytest.importorskip("asv")


def test_scaleout_records_append_beside_the_cold_start_series(tmp_path: Path) -> None:
    [run] = load_scaleouts(DATA / "scaleout")
    cold = load_results(DATA / "results" / "cpu-lane")
    commit = Commit("c" * 40, 1_800_000_000_000)
    history = tmp_path / "asv"
    env = run.environment
    cold = [dataclasses.replace(r, environment=env) for r in cold]  # one machine for both series
    asv_store.record(cold, history, commit, machine="box")
    first = record_scaleout([run], history, commit, machine="box")
    again = record_scaleout([dataclasses.replace(run, run_id=run.run_id + "b")], history, commit, machine="box")
    assert first.path == again.path and first.path.name.endswith("-coldstart-scaleout.json")
    assert (first.added_runs, again.added_runs) == (1, 1)
    samples = asv_store.load_commit(history, commit.hash, "box")
    case = next(c for k, c in samples.cases.items() if k.optimization == "scaleout")
    expected = scaleout_metrics(run)["replica_add_s"]
    assert case.values("replica_add_s") == (expected, expected)  # appended, not rewritten
    assert any(k.optimization == "baseline" for k in samples.cases)  # the cold-start file is untouched
