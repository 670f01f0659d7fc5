"""Scale-out results: what a replica's cold start costs the users waiting for it.

One JSON file per run under ``results/scaleout/`` (schema-versioned, written
atomically, never overwritten). Times are seconds since the run's origin (the
first load step's start); ``None`` always means "not observed", never zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pytest_coldstart.model.errors import ConfigError, SchemaVersionError
from pytest_coldstart.model.files import atomic_write_json
from pytest_coldstart.model.jsonvalue import JsonObject, JsonValue
from pytest_coldstart.model.paths import under

SCALEOUT_SCHEMA_VERSION = 1
SCALEOUT_DIR = "scaleout"
#: Scale-out metrics in history, compare and budgets, case (model, "scaleout", "ray-serve"). All seconds,
#: lower is better: throughput at N replicas is kept as its inverse, ``s_per_request_Nr``.
SCALEOUT_METRICS: tuple[str, ...] = ("replica_add_s", "ttft_p95_scaleout_s", "s_per_request_1r", "s_per_request_2r")
SCALEOUT_OPTIMIZATION = "scaleout"


@dataclass(frozen=True)
class StepResult:
    """One load-generator run: a stair step (open loop) or a fixed-concurrency probe."""

    label: str
    kind: str  # "step" (rate) | "probe" (fixed concurrency)
    rate_rps: float | None
    max_concurrency: int | None
    start_s: float
    end_s: float
    replicas_start: int
    replicas_end: int
    completed: int
    failed: int
    achieved_rps: float | None
    output_tok_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ttft_p99_s: float | None
    itl_p50_s: float | None
    itl_p95_s: float | None
    slo_attainment: float | None
    generator_cpu_util: float | None  # generator CPU seconds / wall seconds (1.0 = one core busy)
    #: (sent_s on the run's time axis, ttft_s) per completed request, for the figure.
    requests: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    start_s: float | None
    duration_s: float | None


#: Why the controller added a replica: it came with the deployment (initial replicas), the autoscaler decided
#: to scale up, or a replica had failed and this one replaces it.
CAUSE_DEPLOYMENT = "deployment"
CAUSE_AUTOSCALER = "autoscaler"
CAUSE_REPLACEMENT = "replacement"


@dataclass(frozen=True)
class ReplicaResult:
    """One LLM replica's lifecycle on the run's time axis."""

    index: int
    replica_id: str | None
    node_id: str | None
    decision_s: float | None
    ready_s: float | None
    first_request_s: float | None
    replica_add_s: float | None
    reported_startup_s: float | None
    phases: tuple[PhaseSpan, ...] = ()
    unaccounted_s: float | None = None
    #: Why the controller added it: ``deployment`` (initial replicas), ``autoscaler`` (a scale-up decision) or
    #: ``replacement`` (a replica failed); None in results written before it was recorded.
    cause: str | None = None
    #: When the controller reported an exception in it (it was stopped and replaced), if it did.
    failed_s: float | None = None

    @property
    def scaled_out(self) -> bool:
        """Added by the autoscaler under load (what ``replica_add_s`` is about); older results: any after the
        first."""
        return self.index > 0 and self.cause in (None, CAUSE_AUTOSCALER)


@dataclass(frozen=True)
class ScaleoutResult:
    schema_version: int
    run_id: str
    started_at: str
    model: str
    exit_status: str  # ok | error
    error: str | None
    load_generator: JsonObject
    profile: JsonObject
    cluster: JsonObject
    steps: tuple[StepResult, ...]
    replicas: tuple[ReplicaResult, ...]
    replica_timeline: tuple[tuple[float, int, int], ...]  # (t_s, running, starting)
    #: str(replica count) -> requests/s at the probe concurrency.
    throughput_by_replicas: dict[str, float]
    scaling_efficiency: float | None  # throughput(N) / (N * throughput(1)) for the largest N
    replica_add_s: float | None  # the first replica added under load
    max_replicas_reached: int
    ray_processes_left: tuple[str, ...]
    log_path: str | None
    environment: JsonObject = field(default_factory=dict)

    @property
    def added_replica(self) -> ReplicaResult | None:
        return first_scaled_out(self.replicas)

    def ttft_p95_scaleout_s(self) -> float | None:
        """TTFT p95 of the steps that ran while a replica was being added (the users who waited)."""
        added = self.added_replica
        if added is None or added.decision_s is None:
            return None
        until = added.first_request_s if added.first_request_s is not None else float("inf")
        values = [s.ttft_p95_s for s in self.steps if s.kind == "step" and s.ttft_p95_s is not None
                  and s.end_s > added.decision_s and s.start_s < until]
        return max(values) if values else None

    def to_dict(self) -> JsonObject:
        data: JsonObject = asdict(self)
        data["ttft_p95_scaleout_s"] = self.ttft_p95_scaleout_s()
        return data


def first_scaled_out(replicas: Sequence[ReplicaResult]) -> ReplicaResult | None:
    """The first replica the autoscaler added that served a request: the one ``replica_add_s`` reports."""
    return next((r for r in replicas if r.scaled_out and r.replica_add_s is not None), None)


def _tuple(cls: type, items: Any) -> tuple[Any, ...]:
    names = {f.name for f in fields(cls)}
    out = []
    for item in items or ():
        values = {k: v for k, v in item.items() if k in names}
        if cls is StepResult:
            values["requests"] = tuple(tuple(r) for r in values.get("requests", ()))
        if cls is ReplicaResult:
            values["phases"] = tuple(PhaseSpan(**p) for p in values.get("phases", ()))
        out.append(cls(**values))
    return tuple(out)


def scaleout_from_dict(data: Mapping[str, JsonValue], where: str = "scale-out result") -> ScaleoutResult:
    version = data.get("schema_version")
    if version != SCALEOUT_SCHEMA_VERSION:
        raise SchemaVersionError(f"{where}: schema_version {version!r}, this pytest-coldstart reads "
                                 f"{SCALEOUT_SCHEMA_VERSION}; re-run the scale-out benchmark")
    names = {f.name for f in fields(ScaleoutResult)}
    values: dict[str, Any] = {k: v for k, v in data.items() if k in names}  # checked by the constructor below
    try:
        values["steps"] = _tuple(StepResult, values.get("steps"))
        values["replicas"] = _tuple(ReplicaResult, values.get("replicas"))
        values["replica_timeline"] = tuple(tuple(x) for x in values.get("replica_timeline", ()))
        values["ray_processes_left"] = tuple(values.get("ray_processes_left", ()))
        return ScaleoutResult(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: not a scale-out result ({exc})") from None


def save_scaleout(result: ScaleoutResult, results_dir: Path) -> Path:
    """``results_dir/scaleout/<run_id>.json``, atomically, never overwriting."""
    path = under(results_dir / SCALEOUT_DIR, f"{result.run_id}.json", what="scale-out run id (stamp_MODEL_id)")
    return atomic_write_json(path, result.to_dict(), overwrite=False)


def load_scaleout(path: Path) -> ScaleoutResult:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read a scale-out result ({exc})") from None
    return scaleout_from_dict(data, str(path))


def load_scaleouts(results_dir: Path) -> list[ScaleoutResult]:
    """Every scale-out result under *results_dir* (``scaleout/*.json``), oldest first."""
    directory = results_dir / SCALEOUT_DIR if (results_dir / SCALEOUT_DIR).is_dir() else results_dir
    return [load_scaleout(p) for p in sorted(directory.glob("*.json"))]
