"""benchmarks/test_scaleout.py to its last line in seconds: the run replays a recorded real one
(tests/faults/fake_scaleout.py), the rest (figure, asv record, assertions, budgets in force) is the benchmark's own.

Issue 18: the benchmark read a ``state.budgets_path`` that no longer existed and ended in an AttributeError after
a ~20-minute run; nothing in ``make test`` reached that line.
"""

from __future__ import annotations

import json

from pytest_coldstart.model.scaleout import load_scaleouts
from tests.conftest import run_bench

FAKE = ("-p", "tests.faults.fake_scaleout", "-m", "scaleout", "--model", "tiny-llama")


def test_scaleout_benchmark_reaches_its_budgets_and_records_asv(tmp_path):
    asv_dir = tmp_path / "asv"
    run = run_bench(tmp_path / "results", *FAKE, f"--coldstart-workdir={tmp_path / 'work'}",
                    f"--coldstart-asv={asv_dir}", timeout_s=600)
    assert run.returncode == 0, run.output[-4000:]
    assert "1 passed" in run.output and "replaying the recorded run" in run.output
    [result] = load_scaleouts(tmp_path / "results")
    assert (tmp_path / "results" / "scaleout" / f"{result.run_id}.png").is_file()
    assert "scaleout.replica_add_s" in json.loads((asv_dir / "benchmarks.json").read_text())


def test_scaleout_benchmark_fails_over_the_budgets_in_force(tmp_path):
    # The recorded run added its replica in 231.4 s; a 100 s budget must fail it, naming the metric.
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[tiny-llama."scaleout@ray-serve"]\nreplica_add_s = 100\n')
    run = run_bench(tmp_path / "results", *FAKE, f"--coldstart-workdir={tmp_path / 'work'}", "--coldstart-asv=off",
                    f"--coldstart-budgets={budgets}", timeout_s=600)
    assert run.returncode == 1, run.output[-4000:]
    assert "over budget: replica_add_s 231.4 s > 100 s" in run.output, run.output[-4000:]
    assert "AttributeError" not in run.output
