"""``-p tests.faults.fake_scaleout``: the scale-out run replays a recorded real one instead of starting Ray.

``ScaleoutRun.run`` checks its inputs as the real one does, then saves and returns the scale-out result
recorded on the 2-core box (tests/data/scaleout, a real two-node run of the tiny model) under this run's
id. Everything benchmarks/test_scaleout.py does after the run (figure, summary, asv record, assertions,
budgets) then runs for real in seconds; the run itself is tests/integration/test_scaleout.py's (``-m scaleout``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_coldstart.measure.scaleout import ScaleoutRun, check_profile
from pytest_coldstart.model.scaleout import ScaleoutResult, load_scaleout, save_scaleout

RECORDED = Path(__file__).parents[1] / "data" / "scaleout" / "20261130T022648_tiny-llama_784062.json"


def replay(self: ScaleoutRun) -> ScaleoutResult:
    check_profile(self.settings.profile, self.settings.timeout_s)
    result = dataclasses.replace(load_scaleout(RECORDED), run_id=self.run_id, model=self.settings.model)
    self.say(f"replaying the recorded run {RECORDED.name} (tests.faults.fake_scaleout)")
    save_scaleout(result, self.settings.results_dir)
    return result


def pytest_configure(config: pytest.Config) -> None:
    ScaleoutRun.run = replay  # type: ignore[method-assign]  # this process only: the benchmark's subprocess
