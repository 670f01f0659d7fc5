"""Scale-out history in asv: ``scaleout.replica_add_s``, ``scaleout.ttft_p95_scaleout_s``,
``scaleout.s_per_request_{1,2}r`` per (model, "scaleout", "ray-serve").

Written next to the cold-start series (same machine, same commit, the same
three params, ``SERIES_VERSION``), in its own results file
``<machine>/<commit8>-coldstart-scaleout.json`` so a cold-start record and a
scale-out record of one commit never rewrite each other. ``load_commit`` reads
both back, so ``coldstart compare`` gates these like the cold-start phases.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_coldstart.history import asv_store
from pytest_coldstart.history.asv_store import PARAM_NAMES, SCALEOUT_BENCHMARKS, RecordOutcome, require_asv
from pytest_coldstart.history.commits import Commit
from pytest_coldstart.history.samples import SERIES_VERSION, scaleout_cases
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.paths import under
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


def record_scaleout(results: Sequence[ScaleoutResult], results_dir: Path, commit: Commit, *,
                    machine: str | None = None) -> RecordOutcome:
    """Add the successful scale-out runs' values to the asv history (samples appended per commit)."""
    asv = require_asv()
    if not results:
        raise ConfigError("no scale-out results to record; run `pytest benchmarks -m scaleout` first")
    env, name, info = asv_store.one_machine([r.environment for r in results], machine, "scale-out results")
    cases = scaleout_cases(results)
    with asv_store.locked(results_dir):
        asv_store.check_machine(results_dir, name, info)
        target = results_dir / asv.results.get_filename(name, commit.hash, ENV_NAME)
        old = asv.results.Results.load(str(target), machine_name=name) if target.is_file() else None
        combos = sorted({k.astuple() for k in cases})
        params = [sorted({repr(c[i]) for c in combos}) for i in range(3)]
        if old is not None:
            for bench in SCALEOUT_BENCHMARKS:
                if bench in old.get_all_result_keys():
                    for i, values in enumerate(old.get_result_params(bench)):
                        params[i] = sorted({*params[i], *values})
        result = asv.results.Results({"machine": name}, asv_store.requirements(env), commit.hash, commit.date_ms,
                                     ".".join(str(env.get("python", "")).split(".")[:2]), ENV_NAME, {})
        grid = [(m, o, la) for m in params[0] for o in params[1] for la in params[2]]
        by_combo = {tuple(repr(x) for x in k.astuple()): c for k, c in cases.items()}
        for bench, metric in SCALEOUT_BENCHMARKS.items():
            before: list[Any] = [None] * len(grid)
            if old is not None and bench in old.get_all_result_keys():
                old_params = old.get_result_params(bench)
                # asv orders a result's values as itertools.product of its params (asv 0.6.6).
                old_map = dict(zip(itertools.product(*old_params), old.get_result_samples(bench, old_params),
                                   strict=True))
                before = [old_map.get(combo) for combo in grid]
            values, samples, numbers = [], [], []
            for j, combo in enumerate(grid):
                case = by_combo.get(combo)
                merged = list(before[j] or []) + list(case.values(metric) if case else [])
                values.append(True if merged else float("nan"))
                samples.append(merged or None)
                numbers.append(1 if merged else None)
            result.add_result(benchmark_entry(bench, metric, params),
                              asv.runner.BenchmarkResult(result=values, samples=samples, number=numbers, errcode=0,
                                                         stderr="", profile=None), record_samples=True)
        asv_store.save_results(result, results_dir, target)
        asv_store.write_json_atomic(under(results_dir, name, "machine.json", what="machine name"), info, 1)
        bench_path = results_dir / "benchmarks.json"
        benchmarks = asv_store.load_json(bench_path, 2) if bench_path.is_file() else {}
        benchmarks = {k: v for k, v in benchmarks.items() if k != "version"}
        benchmarks.update({b: benchmark_entry(b, m, params) for b, m in SCALEOUT_BENCHMARKS.items()})
        asv_store.write_json_atomic(bench_path, benchmarks, 2)
    ok = sum(1 for r in results if r.exit_status == "ok")
    return RecordOutcome(target, name, commit, ok, len(results) - ok)
