"""Scale-out history in asv: ``scaleout.replica_add_s``, ``scaleout.ttft_p95_scaleout_s``,
``scaleout.s_per_request_{1,2}r`` per (model, "scaleout", "ray-serve").

Written next to the cold-start series (same machine, same commit, the same
three params, ``SERIES_VERSION``), in its own results file
``<machine>/<commit8>-coldstart-scaleout.json`` so a cold-start record and a
scale-out record of one commit never rewrite each other. ``load_commit`` reads
both back, so ``coldstart compare`` gates these like the cold-start phases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_coldstart.history import asv_store
from pytest_coldstart.history.asv_store import PARAM_NAMES, SCALEOUT_BENCHMARKS, RecordOutcome, require_asv
from pytest_coldstart.history.commits import Commit
from pytest_coldstart.history.samples import SERIES_VERSION, scaleout_cases
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.scaleout import ScaleoutResult

ENV_NAME = "coldstart-scaleout"
_DOCS = {
    "replica_add_s": "autoscaling decision -> first request served by the replica added under load",
    "ttft_p95_scaleout_s": "worst per-step TTFT p95 of the load steps that ran while the replica was being added",
    "s_per_request_1r": "1 / requests per second at the probe concurrency with 1 replica",
    "s_per_request_2r": "1 / requests per second at the probe concurrency with 2 replicas",
}


def benchmark_entry(bench: str, metric: str, params: Sequence[Sequence[str]]) -> dict[str, Any]:
    return {"name": bench, "code": f"# {_DOCS[metric]}\n# one sample per scale-out run",
            "params": [list(p) for p in params],
            "param_names": list(PARAM_NAMES), "type": "track", "timeout": 0, "unit": "seconds",
            "version": SERIES_VERSION, "pretty_name": f"{metric} (s)"}


SCALEOUT_SERIES = asv_store.Series(ENV_NAME, SCALEOUT_BENCHMARKS, benchmark_entry)


def record_scaleout(results: Sequence[ScaleoutResult], results_dir: Path, commit: Commit, *,
                    machine: str | None = None) -> RecordOutcome:
    """Add the successful scale-out runs' values to the asv history (samples appended per commit), through the
    cold-start history's own writer (``asv_store.write_series``)."""
    require_asv()
    if not results:
        raise ConfigError("no scale-out results to record; run `pytest benchmarks -m scaleout` first")
    env, name, info = asv_store.one_machine([r.environment for r in results], machine, "scale-out results")
    with asv_store.locked(results_dir):
        asv_store.check_machine(results_dir, name, info)
        target = asv_store.write_series(SCALEOUT_SERIES, scaleout_cases(results), env, name, info, results_dir, commit)
    ok = sum(1 for r in results if r.exit_status == "ok")
    return RecordOutcome(target, name, commit, ok, len(results) - ok)
