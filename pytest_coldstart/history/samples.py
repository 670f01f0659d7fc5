"""Samples per case and metric: the one shape the PR gate and the asv history share.

A *sample set* is what one side of a comparison holds: for every
(model, optimization, launcher) case, the seconds each metric took in each
successful cold start, plus how many starts were attempted and how many failed.
It is built from a results directory (``runs/*.json``) or read back from asv
(``asv_export.load_commit``). A phase that a run did not observe contributes no
sample: it is never counted as zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.logs.timeline import PHASE_NAMES
from pytest_coldstart.model.case import CaseKey, group_by_case
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.result import RunResult, load_results
from pytest_coldstart.model.scaleout import (
    SCALEOUT_DIR,
    SCALEOUT_METRICS,
    SCALEOUT_OPTIMIZATION,
    ScaleoutResult,
    load_scaleouts,
)

#: Whole-start metrics that follow the phases in every table and series.
TOTAL_METRICS: tuple[str, ...] = ("unaccounted_s", "total_ready_s", "ttft_s")
METRICS: tuple[str, ...] = PHASE_NAMES + TOTAL_METRICS
#: Readiness beyond /health (measure/readiness.py): compared, not (yet) an asv series.
COMPARED_METRICS: tuple[str, ...] = (*METRICS, "warm_s")
#: Metrics a start that succeeded may leave unmeasured by chance, not because anything was lost: ``warm_s`` is
#: None when the warm-up latencies never settle (one slow request among the last few on a busy machine). A
#: head without them cannot be judged on them: undecided, not ``missing`` (which fails like a regression).
UNSETTLED_METRICS: frozenset[str] = frozenset({"warm_s"})

#: Version of the metric definitions above, written as each asv benchmark's
#: ``version``. Bump it (with a README note) only to start every series afresh:
#: asv hides results of another version, and compare refuses to mix them.
SERIES_VERSION = "1"

#: Environment keys that identify the hardware. Results measured on machines
#: that differ in any of them are not comparable (software versions may differ:
#: that is what an upgrade PR changes).
MACHINE_KEYS: tuple[str, ...] = ("cpu_model", "cpu_cores", "gpu_name", "gpu_count")


@dataclass(frozen=True)
class CaseSamples:
    """Seconds per metric over the successful starts of one case.

    :param runs: starts attempted (successful + failed + aborted).
    :param failed: starts the *server* failed (exited, timed out, unhealthy): evidence about the code.
    :param errors: first line of each server failure, already redacted by the launcher.
    :param versions: asv series version per metric (empty for a results directory).
    :param aborted: starts the *harness* did not complete (interrupted, harness error, preflight):
        no evidence about the code either way, so a comparison with any cannot be made (exit 2).
    :param abort_errors: first line of each of those.
    """

    key: CaseKey
    samples_s: Mapping[str, tuple[float, ...]]
    runs: int
    failed: int = 0
    errors: tuple[str, ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    aborted: int = 0
    abort_errors: tuple[str, ...] = ()

    @property
    def ok_runs(self) -> int:
        return self.runs - self.failed - self.aborted

    def values(self, metric: str) -> tuple[float, ...]:
        return self.samples_s.get(metric, ())


@dataclass(frozen=True)
class SampleSet:
    """One side of a comparison.

    :param label: where it came from, for reports ("results dir X", "commit abc on M").
    :param machine: the hardware identity (``MACHINE_KEYS``), or an asv machine name.
    :param software: vLLM/torch versions etc., shown in reports; never compared.
    """

    label: str
    cases: Mapping[CaseKey, CaseSamples]
    machine: Mapping[str, Any] = field(default_factory=dict)
    software: Mapping[str, Any] = field(default_factory=dict)


def machine_identity(environment: Mapping[str, Any]) -> dict[str, Any]:
    return {key: environment.get(key) for key in MACHINE_KEYS}


def run_metrics(result: RunResult) -> dict[str, float]:
    """Observed seconds per metric of one successful run (unobserved ones left out)."""
    values: dict[str, float | None] = dict(result.phase_durations())
    values.update(unaccounted_s=result.unaccounted_s, total_ready_s=result.total_ready_s, ttft_s=result.ttft_s,
                  warm_s=result.warm_s)
    return {name: float(v) for name, v in values.items() if v is not None and name in COMPARED_METRICS}


def _first_line(text: str | None, status: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return f"{status}: {line}" if line else status


def cases_from_runs(results: Iterable[RunResult]) -> dict[CaseKey, CaseSamples]:
    """Group runs by case; failed runs are counted, not sampled."""
    grouped = group_by_case(results)
    cases = {}
    for key, runs in sorted(grouped.items()):
        samples: dict[str, list[float]] = {}
        failed = [r for r in runs if r.exit_status.server_failure]
        aborted = [r for r in runs if r.exit_status.harness_failure]
        for run in runs:
            if not run.ok:
                continue
            for metric, value in run_metrics(run).items():
                samples.setdefault(metric, []).append(value)
        cases[key] = CaseSamples(key, {m: tuple(v) for m, v in samples.items()}, len(runs), len(failed),
                                 tuple(_first_line(r.error, r.exit_status) for r in failed),
                                 dict.fromkeys(samples, SERIES_VERSION), len(aborted),
                                 tuple(_first_line(r.error, r.exit_status) for r in aborted))
    return cases


def from_runs(results: list[RunResult], label: str) -> SampleSet:
    """A sample set from run results, refusing a mix of machines."""
    if not results:
        raise ConfigError(f"{label}: no cold-start runs; run the benchmarks first "
                          "(pytest benchmarks -m coldstart --coldstart-results DIR)")
    identities = {tuple(machine_identity(r.environment).items()) for r in results}
    if len(identities) > 1:
        listed = "; ".join(", ".join(f"{k}={v}" for k, v in ident) for ident in sorted(identities, key=str))
        raise ConfigError(f"{label}: runs from {len(identities)} different machines ({listed}); "
                          "keep one machine's runs per results directory")
    env = results[-1].environment
    software = {k: env.get(k) for k in ("vllm", "torch", "ray", "gpu_driver", "cuda_version", "git_commit")}
    return SampleSet(label, cases_from_runs(results), machine_identity(env), software)


def from_results_dir(path: Path) -> SampleSet:
    """Every run under ``path/runs/`` (the plugin's ``--coldstart-results`` layout), plus ``path/scaleout/``."""
    scaleouts = load_scaleouts(path) if (path / SCALEOUT_DIR).is_dir() else []
    if not scaleouts:
        return from_runs(load_results(path), f"results dir {path}")
    label = f"results dir {path}"
    runs = load_results(path) if (path / "runs").is_dir() else []
    base = from_runs(runs, label) if runs else SampleSet(label, {}, machine_identity(scaleouts[-1].environment),
                                                         {k: scaleouts[-1].environment.get(k)
                                                          for k in ("vllm", "torch", "ray", "git_commit")})
    return SampleSet(label, {**base.cases, **scaleout_cases(scaleouts)}, base.machine, base.software)


def scaleout_metrics(result: ScaleoutResult) -> dict[str, float]:
    """Observed values of one successful scale-out run (unobserved ones left out)."""
    values: dict[str, float | None] = {"replica_add_s": result.replica_add_s,
                                       "ttft_p95_scaleout_s": result.ttft_p95_scaleout_s()}
    for replicas, rps in result.throughput_by_replicas.items():
        values[f"s_per_request_{replicas}r"] = round(1.0 / rps, 6) if rps else None
    return {name: float(v) for name, v in values.items() if v is not None and name in SCALEOUT_METRICS}


def scaleout_cases(results: Iterable[ScaleoutResult]) -> dict[CaseKey, CaseSamples]:
    """Scale-out runs grouped by model; failed runs are counted, not sampled."""
    grouped: dict[CaseKey, list[ScaleoutResult]] = {}
    for result in results:
        grouped.setdefault(CaseKey(result.model, SCALEOUT_OPTIMIZATION, "ray-serve"), []).append(result)
    cases = {}
    for key, runs in sorted(grouped.items()):
        samples: dict[str, list[float]] = {}
        failed = [r for r in runs if r.exit_status != "ok"]
        for run in runs:
            if run.exit_status == "ok":
                for metric, value in scaleout_metrics(run).items():
                    samples.setdefault(metric, []).append(value)
        cases[key] = CaseSamples(key, {m: tuple(v) for m, v in samples.items()}, len(runs), len(failed),
                                 tuple(_first_line(r.error, r.exit_status) for r in failed),
                                 dict.fromkeys(samples, SERIES_VERSION))
    return cases


def is_results_dir(path: Path) -> bool:
    return (path / "runs").is_dir() or (path / SCALEOUT_DIR).is_dir()
