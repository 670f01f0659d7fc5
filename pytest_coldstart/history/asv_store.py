"""Cold-start history in asv: write results through asv's own API, read them back.

asv is the history and site layer only: a multi-minute cold start does not fit
``asv run`` (a subprocess per benchmark, 60 s default timeout, asv 0.6.6), so
pytest measures and this module writes the files ``asv publish`` reads:

* ``benchmarks.json``: one ``track`` benchmark per phase plus the totals and
  ``health.failed_starts``, parametrised by model x optimization x launcher,
  unit seconds, and an explicit ``version`` (``SERIES_VERSION``). asv drops
  results whose stored version differs from benchmarks.json
  (``Results.get_result_keys``), so the version only changes to start a new
  series on purpose.
* ``<machine>/machine.json``: asv's fields plus GPU name/count/driver/CUDA.
* ``<machine>/<commit8>-coldstart.json``: one ``asv.results.Results`` per
  commit, each value the median of the samples (one sample per cold start,
  ``record_samples=True`` so compare can run a test on them).

Only the machine name is in ``Results.params``: asv makes one graph per
distinct params dict, so anything there (driver, vLLM wheel, Python patch
level) would split a series. Those go in ``requirements``, recorded per commit
and shown by ``coldstart compare``, but never part of the series key.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.history.commits import Commit
from pytest_coldstart.history.samples import (
    MACHINE_KEYS,
    METRICS,
    SERIES_VERSION,
    CaseKey,
    CaseSamples,
    SampleSet,
    cases_from_runs,
    machine_identity,
)
from pytest_coldstart.logs.timeline import PHASE_RULES
from pytest_coldstart.model.errors import ConfigError, SchemaVersionError
from pytest_coldstart.model.files import atomic_path
from pytest_coldstart.model.paths import MAX_MACHINE, slug, under
from pytest_coldstart.model.result import RunResult
from pytest_coldstart.model.scaleout import SCALEOUT_METRICS

PARAM_NAMES = ("model", "optimization", "launcher")
ENV_NAME = "coldstart"
FAILED_METRIC = "failed_starts"
LEDGER = "coldstart-runs.txt"
_TOTAL_DOCS = {
    "unaccounted_s": "time between spawn and /health not covered by an observed phase",
    "total_ready_s": "spawn to the first GET /health that answers 200",
    "ttft_s": "time to first token of the first streamed completion after /health",
}


def require_asv() -> Any:
    """The asv package, or a ConfigError saying how to install it."""
    try:
        import asv.results
        import asv.runner
        import asv.util
    except ImportError:
        raise ConfigError("asv is not installed; pip install 'pytest-coldstart[asv]'") from None
    return asv


def benchmark_name(metric: str) -> str:
    if metric == FAILED_METRIC:
        return f"health.{metric}"
    return f"phases.{metric}" if metric in {r.name for r in PHASE_RULES} else f"totals.{metric}"


ALL_METRICS: tuple[str, ...] = (*METRICS, FAILED_METRIC)
BENCHMARK_NAMES: dict[str, str] = {benchmark_name(m): m for m in ALL_METRICS}
#: The scale-out series (``history.scaleout.record_scaleout`` writes them).
SCALEOUT_BENCHMARKS: dict[str, str] = {f"scaleout.{m}": m for m in SCALEOUT_METRICS}


def _code(metric: str) -> str:
    rule = next((r for r in PHASE_RULES if r.name == metric), None)
    if rule is not None:
        start = ", ".join(rule.starts) or "the end of the previous observed phase"
        return (f"# {rule.description}\n# starts at: {start}\n# ends at the first of: {', '.join(rule.ends)}\n"
                "# one sample per cold start; a run that did not observe the phase adds no sample")
    if metric == FAILED_METRIC:
        return "# cold starts of this case that failed (no /health, server exited, timeout) at this commit"
    return f"# {_TOTAL_DOCS[metric]}\n# one sample per cold start"


def benchmark_entry(metric: str, params: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The benchmarks.json entry of *metric* (params: lists of repr() strings)."""
    return {"name": benchmark_name(metric), "code": _code(metric), "params": [list(p) for p in params],
            "param_names": list(PARAM_NAMES), "type": "track", "timeout": 0,
            "unit": "count" if metric == FAILED_METRIC else "seconds", "version": SERIES_VERSION,
            "pretty_name": f"{metric} ({'starts' if metric == FAILED_METRIC else 's'})"}


def _slug(text: str) -> str:
    return re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9.]+", "-", text)).strip("-.")


def default_machine_name(environment: Mapping[str, Any]) -> str:
    """A name shared by identical hosts: ``8xNVIDIA-H100-80GB-HBM3``, ``cpu-2x-AMD-EPYC-7B13``.

    Ephemeral CI runners get new host names every run; one history per
    hardware type needs a name derived from the hardware instead.
    """
    if environment.get("gpu_count"):
        return f"{environment['gpu_count']}x{_slug(str(environment.get('gpu_name')))}"[:MAX_MACHINE]
    return f"cpu-{environment.get('cpu_cores')}x-{_slug(str(environment.get('cpu_model')))}"[:MAX_MACHINE]


def machine_info(environment: Mapping[str, Any], name: str) -> dict[str, str]:
    """machine.json: asv's fields (machine, os, arch, cpu, num_cpu, ram) plus the GPU."""
    os_text = str(environment.get("os") or "")
    arch = next(iter(re.findall(r"x86_64|aarch64|arm64|ppc64le|s390x", os_text)), "")
    gpu_count = int(environment.get("gpu_count") or 0)
    return {"machine": name, "os": os_text, "arch": arch, "cpu": str(environment.get("cpu_model") or ""),
            "num_cpu": str(environment.get("cpu_cores") or ""), "ram": f"{environment.get('ram_gib')} GiB",
            "gpu": str(environment.get("gpu_name") or "none") if gpu_count else "none",
            "gpu_count": str(gpu_count), "gpu_driver": str(environment.get("gpu_driver") or ""),
            "cuda": str(environment.get("cuda_version") or "")}


def requirements(environment: Mapping[str, Any]) -> dict[str, str]:
    """What was installed and where: recorded per commit, kept out of the series key."""
    keys = ("vllm", "vllm_distribution", "torch", "ray", "pytest_coldstart", "python", "os", "gpu_driver",
            "cuda_version", *machine_identity(environment))
    return {k: str(environment.get(k)) for k in keys if environment.get(k) is not None}


def run_id(result: RunResult) -> str:
    """Stable id of one run, so exporting the same run twice adds its samples once."""
    text = "|".join((result.started_at, *result.key.astuple(), str(result.repeat_index), result.log_path))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecordOutcome:
    """What ``record`` wrote."""

    path: Path
    machine: str
    commit: Commit
    added_runs: int
    skipped_runs: int


@contextmanager
def _locked(results_dir: Path) -> Iterator[None]:
    results_dir.mkdir(parents=True, exist_ok=True)
    with (results_dir / ".coldstart-asv.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # two sessions recording at once must not lose samples
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def locked(results_dir: Path) -> Any:
    """The history's lock (public for ``history.scaleout``)."""
    return _locked(results_dir)


def write_json_atomic(path: Path, data: Any, api_version: int) -> None:
    _write_json_atomic(path, data, api_version)


def load_json(path: Path, api_version: int) -> Any:
    return _load_json(path, api_version)


def check_machine(results_dir: Path, name: str, info: dict[str, str]) -> None:
    _check_machine(results_dir, name, info)


def _write_json_atomic(path: Path, data: Any, api_version: int) -> None:
    asv = require_asv()
    with atomic_path(path) as tmp:
        asv.util.write_json(str(tmp), data, api_version)


def _load_json(path: Path, api_version: int) -> Any:
    asv = require_asv()
    try:
        return asv.util.load_json(str(path), api_version=api_version)
    except asv.util.UserError as exc:
        raise SchemaVersionError(f"{path}: {exc}") from None


def _check_machine(results_dir: Path, name: str, info: dict[str, str]) -> None:
    path = under(results_dir, name, "machine.json", what="machine name")
    if not path.is_file():
        return
    old = _load_json(path, 1)
    fields = ("cpu", "num_cpu", "gpu", "gpu_count")
    if any(str(old.get(f)) != info[f] for f in fields):
        was = ", ".join(f"{f}={old.get(f)}" for f in fields)
        now = ", ".join(f"{f}={info[f]}" for f in fields)
        raise ConfigError(f"machine {name!r} in {results_dir} holds results from other hardware ({was}; these runs: "
                          f"{now}). Record under another name (--coldstart-machine / --machine NAME).")


def _existing(results_dir: Path, machine: str, commit: Commit, env_name: str = ENV_NAME) -> Any:
    asv = require_asv()
    path = results_dir / asv.results.get_filename(machine, commit.hash, env_name)
    if not path.is_file():
        return None
    try:
        return asv.results.Results.load(str(path), machine_name=machine)
    except asv.util.UserError as exc:
        raise SchemaVersionError(f"{path}: {exc}; move it aside or run `asv update`") from None


def _combos(params: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    import itertools

    return list(itertools.product(*params))


def _union(params: list[list[str]], keys: Sequence[CaseKey]) -> list[list[str]]:
    for key in keys:
        for i, value in enumerate((key.model, key.optimization, key.launcher)):
            if repr(value) not in params[i]:
                params[i].append(repr(value))
    return params


def save_results(result: Any, results_dir: Path, target: Path) -> None:
    """Write an asv ``Results`` to *target* (``results_dir / asv.results.get_filename(...)``) atomically:
    asv saves under that name into a staging folder beside the history, then it is renamed into place."""
    staging = Path(tempfile.mkdtemp(dir=results_dir, prefix=".coldstart-staging-"))
    try:
        result.save(str(staging))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / target.relative_to(results_dir), target)  # target is asv's own name for it
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def one_machine(environments: Sequence[Mapping[str, Any]], machine: str | None,
                what: str) -> tuple[Mapping[str, Any], str, dict[str, Any]]:
    """The one machine *environments* were measured on: (its environment, asv machine name, machine info).

    A history file holds one machine's samples; results from several are refused, not mixed.
    """
    identities = {tuple(machine_identity(env).items()) for env in environments}
    if len(identities) > 1:
        raise ConfigError(f"{what} from {len(identities)} different machines; record each machine's {what} separately")
    env = environments[-1]
    # The name becomes a directory of the history: a safe slug, or `--machine ../../x` writes outside it.
    name = slug(machine or default_machine_name(env), "machine name (--machine / --coldstart-machine)", MAX_MACHINE)
    return env, name, machine_info(env, name)


@dataclass(frozen=True)
class Series:
    """One family of benchmarks kept in its own results file per commit (``<machine>/<commit8>-<env_name>.json``):
    the cold-start phases and totals, or the scale-out metrics (``history.scaleout``).

    :param benchmarks: asv benchmark name -> the metric its samples are.
    :param entry: (benchmark, metric, params) -> its ``benchmarks.json`` entry.
    :param failed_metric: the metric that counts failed starts (its value is a count, not samples).
    """

    env_name: str
    benchmarks: Mapping[str, str]
    entry: Callable[[str, str, Sequence[Sequence[str]]], dict[str, Any]]
    failed_metric: str | None = None


COLDSTART_SERIES = Series(ENV_NAME, BENCHMARK_NAMES, lambda bench, metric, params: benchmark_entry(metric, params),
                          FAILED_METRIC)


def record(runs: Sequence[RunResult], results_dir: Path, commit: Commit, *, machine: str | None = None) -> RecordOutcome:
    """Add *runs* (one commit, one machine) to the asv history under *results_dir*.

    Samples already recorded for the same commit are kept and the new ones
    appended (asv's ``--append-samples``); runs recorded before are skipped.
    """
    asv = require_asv()
    if not runs:
        raise ConfigError("no cold-start runs to record; run the benchmarks first")
    env, name, info = one_machine([r.environment for r in runs], machine, "runs")
    with _locked(results_dir):
        _check_machine(results_dir, name, info)
        ledger = under(results_dir, name, LEDGER, what="machine name")
        seen = set(ledger.read_text().split()) if ledger.is_file() else set()
        fresh = []
        for run in runs:  # each run once: not recorded before, and not twice in this call (a directory given
            key = run_id(run)  # twice, or a copy of one) -- a duplicate would double n for the significance test
            if key not in seen:
                seen.add(key)
                fresh.append(run)
        if not fresh:  # every run is in the history already (under this or another commit)
            target = results_dir / asv.results.get_filename(name, commit.hash, ENV_NAME)
            return RecordOutcome(target, name, commit, 0, len(runs))
        target = write_series(COLDSTART_SERIES, cases_from_runs(fresh), env, name, info, results_dir, commit)
        with ledger.open("a") as fh:
            fh.writelines(f"{run_id(r)}\n" for r in fresh)
    return RecordOutcome(target, name, commit, len(fresh), len(runs) - len(fresh))


def write_series(series: Series, cases: Mapping[CaseKey, CaseSamples], env: Mapping[str, Any], name: str,
                 info: dict[str, Any], results_dir: Path, commit: Commit) -> Path:
    """Append *cases*' samples to *series*' results file of *commit* on machine *name*, and update
    ``benchmarks.json`` and ``machine.json``; the caller holds the history's lock. Returns the file written."""
    asv = require_asv()
    target = results_dir / asv.results.get_filename(name, commit.hash, series.env_name)
    bench_path = results_dir / "benchmarks.json"
    benchmarks = _load_json(bench_path, 2) if bench_path.is_file() else {}
    old = _existing(results_dir, name, commit, series.env_name)
    params: list[list[str]] = [[], [], []]
    for bench in series.benchmarks:
        for source in ([benchmarks[bench]["params"]] if bench in benchmarks else []) + \
                      ([old.get_result_params(bench)] if old is not None and bench in old.get_all_result_keys()
                       else []):
            for i, values in enumerate(source):
                params[i] += [v for v in values if v not in params[i]]
    params = _union(params, list(cases))
    result = asv.results.Results({"machine": name}, requirements(env), commit.hash, commit.date_ms,
                                 ".".join(str(env.get("python", "")).split(".")[:2]), series.env_name, {})
    for bench, metric in series.benchmarks.items():
        result.add_result(series.entry(bench, metric, params),
                          _merged(old, bench, metric, params, cases, series.failed_metric), record_samples=True)
    save_results(result, results_dir, target)
    _write_json_atomic(under(results_dir, name, "machine.json", what="machine name"), info, 1)
    benchmarks = {k: v for k, v in benchmarks.items() if k != "version"}
    benchmarks.update({b: series.entry(b, m, params) for b, m in series.benchmarks.items()})
    _write_json_atomic(bench_path, benchmarks, 2)
    return target


def _merged(old: Any, bench: str, metric: str, params: list[list[str]],
            cases: Mapping[CaseKey, CaseSamples], failed_metric: str | None = FAILED_METRIC) -> Any:
    """A BenchmarkResult: old samples of this commit + the new ones, per combination.

    ``None`` (asv: failed) where every start of a case failed, NaN (asv:
    skipped) where starts succeeded but never observed the phase.
    """
    asv = require_asv()
    combos = _combos(params)
    old_samples: list[Any] = [None] * len(combos)
    old_values: list[Any] = [None] * len(combos)
    if old is not None and bench in old.get_all_result_keys() and old.benchmark_version.get(bench) == SERIES_VERSION:
        old_samples = old.get_result_samples(bench, params)
        old_values = old.get_result_value(bench, params)
    by_combo: dict[tuple[str, ...], CaseSamples] = {(repr(k.model), repr(k.optimization), repr(k.launcher)): c
                                                    for k, c in cases.items()}
    values: list[Any] = []
    samples: list[Any] = []
    numbers: list[Any] = []
    for j, combo in enumerate(combos):
        case = by_combo.get(combo)
        if metric == failed_metric:
            ran_before = old_values[j] is not None and not _isnan(old_values[j])
            count = (case.failed if case else 0) + (old_values[j] if ran_before else 0)
            known = case is not None or ran_before
            values.append(float(count) if known else math.nan)
            samples.append(None)
            numbers.append(None)
            continue
        merged = list(old_samples[j] or []) + list(case.values(metric) if case else [])
        if merged:
            values.append(True)
            samples.append(merged)
            numbers.append(1)
        else:
            # Failed only if this commit ran the case and every start failed; a case not run at
            # this commit, or a phase its successful starts never showed, is "skipped".
            all_failed = (case is not None and case.runs == case.failed) or (case is None and old_values[j] is None
                                                                              and old_samples[j] is None
                                                                              and _ran(old, combo))
            values.append(None if all_failed else math.nan)
            samples.append(None)
            numbers.append(None)
    return asv.runner.BenchmarkResult(result=values, samples=samples, number=numbers, errcode=0, stderr="",
                                      profile=None)


def _ran(old: Any, combo: tuple[str, ...]) -> bool:
    """Whether the recorded commit had starts of *combo* (its failed_starts value is set)."""
    if old is None or "health.failed_starts" not in old.get_all_result_keys():
        return False
    params = old.get_result_params("health.failed_starts")
    values = old.get_result_value("health.failed_starts", params)
    known = dict(zip(_combos(params), values, strict=True))
    value = known.get(combo)
    return value is not None and not _isnan(value)


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def machines(results_dir: Path) -> list[str]:
    """Machine names with a machine.json under *results_dir*."""
    return sorted(p.parent.name for p in results_dir.glob("*/machine.json"))


def commits_with_results(results_dir: Path, machine: str) -> list[str]:
    """The 8-character commit prefixes that have result files for *machine*."""
    return sorted({p.name.split("-")[0] for p in under(results_dir, machine, what="machine name").glob("*.json")
                   if p.name != "machine.json"})


def load_commit(results_dir: Path, commit_hash: str, machine: str) -> SampleSet:
    """The samples recorded for *commit_hash* (full or a prefix) on *machine*."""
    asv = require_asv()
    prefix = commit_hash[:8]
    files = [p for p in sorted(under(results_dir, machine, what="machine name").glob("*.json"))
             if p.name != "machine.json" and p.name.split("-")[0].startswith(prefix)]
    loaded = []
    for path in files:
        try:
            res = asv.results.Results.load(str(path), machine_name=machine)
        except asv.util.UserError as exc:
            raise SchemaVersionError(f"{path}: {exc}; move it aside or run `asv update`") from None
        if res.commit_hash.startswith(commit_hash):
            loaded.append(res)
    hashes = {r.commit_hash for r in loaded}
    if not loaded:
        raise ConfigError(f"no asv results for commit {commit_hash} on machine {machine!r} in {results_dir}; "
                          "record it first (pytest benchmarks -m coldstart --coldstart-asv "
                          f"{results_dir} --coldstart-commit {commit_hash})")
    if len(hashes) > 1:
        raise ConfigError(f"commit prefix {commit_hash!r} is ambiguous in {results_dir}: {', '.join(sorted(hashes))}")
    cases: dict[CaseKey, dict[str, Any]] = {}
    for res in loaded:
        for bench in res.get_all_result_keys():
            metric = BENCHMARK_NAMES.get(bench) or SCALEOUT_BENCHMARKS.get(bench)
            if metric is None:
                continue
            params = res.get_result_params(bench)
            values = res.get_result_value(bench, params)
            samples = res.get_result_samples(bench, params)
            for j, combo in enumerate(_combos(params)):
                if values[j] is None or _isnan(values[j]):
                    continue  # failed (counted by failed_starts) or not run / not observed
                key = CaseKey(*(_unrepr(v) for v in combo))
                case = cases.setdefault(key, {"samples": {}, "failed": 0, "versions": {}})
                case["versions"][metric] = str(res.benchmark_version.get(bench))
                if metric == FAILED_METRIC:
                    case["failed"] += int(values[j] or 0)
                elif samples[j]:
                    case["samples"][metric] = case["samples"].get(metric, ()) + tuple(samples[j])
    out = {}
    for key, raw in sorted(cases.items()):
        ok = len(raw["samples"].get("total_ready_s") or raw["samples"].get("replica_add_s") or ())
        if ok == 0 and raw["failed"] == 0:
            continue
        # The version each value was recorded under; compare refuses to mix versions.
        versions = {m: v for m, v in raw["versions"].items() if m in raw["samples"]}
        out[key] = CaseSamples(key, raw["samples"], ok + raw["failed"], raw["failed"],
                               ("failed (asv keeps only the count; see the run's log)",) * raw["failed"], versions)
    reqs = loaded[0]._requirements or {}  # asv has no public accessor for requirements (0.6.6)
    commit_full = next(iter(hashes))
    return SampleSet(f"commit {commit_full[:8]} on {machine}", out,
                     {k: reqs.get(k) for k in MACHINE_KEYS},
                     {"vllm": reqs.get("vllm"), "torch": reqs.get("torch"), "gpu_driver": reqs.get("gpu_driver"),
                      "cuda_version": reqs.get("cuda_version"), "git_commit": commit_full})


def unrepr(value: str) -> str:
    """A params value as asv stores it (repr) -> the plain string."""
    return _unrepr(value)


def _unrepr(value: str) -> str:
    import ast

    try:
        out = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return str(out)
