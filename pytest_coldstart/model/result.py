"""Versioned run results: one JSON file per cold start, written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from pytest_coldstart.model.case import CaseKey, ExitStatus
from pytest_coldstart.model.efficiency import LoadEfficiency
from pytest_coldstart.model.errors import ConfigError, SchemaVersionError
from pytest_coldstart.model.files import atomic_path
from pytest_coldstart.model.jsonvalue import JsonObject, JsonValue, opt_float, opt_int, opt_str, str_list, str_map
from pytest_coldstart.model.paths import under
from pytest_coldstart.model.phase import Phase
from pytest_coldstart.model.records import (
    RECORDS,
    CacheRecord,
    Environment,
    PhaseAgreement,
    Probe,
    Profile,
    Readiness,
    Reported,
)
from pytest_coldstart.model.redact import Redactor

#: Bump on any incompatible change; readers refuse other versions with a next step.
SCHEMA_VERSION = 1
RUNS_DIR = "runs"


@dataclass(frozen=True)
class RunResult:
    """One measured cold start (or one failed attempt: ``exit_status != "ok"``)."""

    model: str
    optimization: str
    launcher: str
    cache_state: str
    started_at: str
    phases: tuple[Phase, ...]
    reported: Reported
    total_ready_s: float | None
    ttft_s: float | None
    first_response_s: float | None
    unaccounted_s: float | None
    environment: Environment
    exit_status: ExitStatus
    log_path: str
    repeat_index: int = 0
    server_exit_code: int | None = None
    error: str | None = None
    last_phase: str | None = None
    server_argv: tuple[str, ...] = ()
    env_overrides: dict[str, str] = field(default_factory=dict)
    cache: CacheRecord = field(default_factory=CacheRecord)
    #: Weight-load efficiency vs the source's floor (efficiency.py); None in files from before it existed.
    efficiency: LoadEfficiency | None = None
    # Issue 14 (all optional; files from before them load with these defaults).
    #: parent phase -> its sub-phases from the in-vLLM probe; they sum to the parent.
    sub_phases: dict[str, tuple[Phase, ...]] = field(default_factory=dict)
    #: Probe vs log lines vs vLLM's self-reports, over max(0.1 s, 3 %); None: no probe events.
    phase_agreement: tuple[PhaseAgreement, ...] | None = None
    #: The phases from log lines alone, when the probe's edges replaced some.
    log_phases: tuple[Phase, ...] = ()
    #: The probe: events file, event count, targets missing in this vLLM.
    probe: Probe = field(default_factory=Probe)
    #: First greedy completion matches the recorded oracle; None: no oracle yet (one was recorded) or not checked.
    correct: bool | None = None
    #: Seconds from ready until request latency settled; None: not measured or never settled.
    warm_s: float | None = None
    #: How ``correct`` and ``warm_s`` were decided (oracle key, latencies).
    readiness: Readiness = field(default_factory=Readiness)
    #: ``--coldstart-profile``: speedscope path and top functions per phase.
    profile: Profile | None = None
    #: Docker starts: the image pull vs the registry's floor (measure/registry_floor.py; ``weight_bytes`` are
    #: the image's compressed layer bytes); None for other launchers and older files.
    pull_efficiency: LoadEfficiency | None = None
    #: ``--coldstart-launcher replay``: the recorded log, its sha256, the speed factor and the replay's time
    #: resolution; None for a live start. Phases are the recording's; TTFT is the replay server's.
    replay: JsonObject | None = None

    @property
    def replayed(self) -> bool:
        """A replay of a recorded start, not a live one (kept out of the asv history unless asked)."""
        return self.replay is not None

    def __post_init__(self) -> None:
        # A plain JSON object where a record belongs (a test's ``reported={}``, a hook's edit) becomes that
        # record, checked; everything after sees typed records only.
        for name, record in RECORDS.items():
            value = getattr(self, name)
            if name == "phase_agreement":
                if value is not None and not all(isinstance(v, PhaseAgreement) for v in value):
                    object.__setattr__(self, name, tuple(PhaseAgreement.from_dict(v) for v in value))
            elif value is not None and not isinstance(value, record):
                object.__setattr__(self, name, record.from_dict(value))
        if not isinstance(self.exit_status, ExitStatus):
            object.__setattr__(self, "exit_status", ExitStatus(self.exit_status))

    @property
    def key(self) -> CaseKey:
        return CaseKey(self.model, self.optimization, self.launcher)

    @property
    def ok(self) -> bool:
        return self.exit_status == ExitStatus.OK

    def phase_durations(self) -> dict[str, float | None]:
        return {p.name: p.duration_s for p in self.phases}

    def to_dict(self) -> JsonObject:
        data: JsonObject = {
            "schema_version": SCHEMA_VERSION,
            "model": self.model, "optimization": self.optimization, "launcher": self.launcher,
            "cache_state": self.cache_state, "repeat_index": self.repeat_index, "started_at": self.started_at,
            "exit_status": str(self.exit_status), "server_exit_code": self.server_exit_code, "error": self.error,
            "last_phase": self.last_phase, "total_ready_s": self.total_ready_s, "ttft_s": self.ttft_s,
            "first_response_s": self.first_response_s, "unaccounted_s": self.unaccounted_s,
            "phases": [p.to_dict() for p in self.phases], "reported": self.reported.to_dict(),
            "environment": self.environment.to_dict(), "log_path": self.log_path,
            "server_argv": list(self.server_argv), "env_overrides": dict(self.env_overrides),
            "cache": self.cache.to_dict(),
            "efficiency": self.efficiency.to_dict() if self.efficiency is not None else None,
        }
        # Issue 14's optional fields, written only when set: files without them read and write back unchanged.
        extra: JsonObject = {
            "sub_phases": {k: [p.to_dict() for p in v] for k, v in self.sub_phases.items()},
            "phase_agreement": None if self.phase_agreement is None else [d.to_dict() for d in self.phase_agreement],
            "log_phases": [p.to_dict() for p in self.log_phases], "probe": self.probe.to_dict(),
            "correct": self.correct, "warm_s": self.warm_s, "readiness": self.readiness.to_dict(),
            "profile": None if self.profile is None else self.profile.to_dict(),
            "pull_efficiency": None if self.pull_efficiency is None else self.pull_efficiency.to_dict(),
            "replay": None if self.replay is None else dict(self.replay),
        }
        # An empty phase_agreement is news (everything agreed); None is "no probe events".
        data.update({k: v for k, v in extra.items() if v is not None and (v not in ({}, []) or k == "phase_agreement")})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> RunResult:
        """The result of a results file's JSON; ``TypeError``/``KeyError``/``ValueError`` naming the field if
        it is malformed (``load_result`` checks it with ``validate`` first and names the file)."""

        def text(key: str) -> str:
            value = opt_str(data[key], key)
            if value is None:
                raise TypeError(f"{key}: expected a string, got null")
            return value

        def seconds(key: str) -> float | None:
            return opt_float(data.get(key), key)

        efficiency, pull = data.get("efficiency"), data.get("pull_efficiency")
        agreement = data.get("phase_agreement")
        profile = data.get("profile")
        correct = data.get("correct")
        if correct is not None and not isinstance(correct, bool):
            raise TypeError(f"correct: expected true, false or null, got {correct!r}")
        return cls(
            model=text("model"), optimization=text("optimization"), launcher=text("launcher"),
            cache_state=text("cache_state"), started_at=text("started_at"), phases=_phases(data["phases"], "phases"),
            reported=Reported.from_dict(data["reported"]), total_ready_s=seconds("total_ready_s"),
            ttft_s=seconds("ttft_s"), first_response_s=seconds("first_response_s"),
            unaccounted_s=seconds("unaccounted_s"), environment=Environment.from_dict(data["environment"]),
            exit_status=ExitStatus(text("exit_status")), log_path=text("log_path"),
            repeat_index=opt_int(data.get("repeat_index"), "repeat_index") or 0,
            server_exit_code=opt_int(data.get("server_exit_code"), "server_exit_code"),
            error=opt_str(data.get("error"), "error"), last_phase=opt_str(data.get("last_phase"), "last_phase"),
            server_argv=str_list(data.get("server_argv"), "server_argv"),
            env_overrides=str_map(data.get("env_overrides"), "env_overrides"),
            cache=CacheRecord.from_dict(data.get("cache")),
            efficiency=LoadEfficiency.from_dict(efficiency) if isinstance(efficiency, dict) and efficiency else None,
            sub_phases={k: _phases(v, f"sub_phases.{k}") for k, v in _object(data.get("sub_phases")).items()},
            phase_agreement=None if agreement is None else tuple(PhaseAgreement.from_dict(d)
                                                                 for d in _list(agreement, "phase_agreement")),
            log_phases=_phases(data.get("log_phases"), "log_phases"),
            probe=Probe.from_dict(data.get("probe")), correct=correct, warm_s=seconds("warm_s"),
            readiness=Readiness.from_dict(data.get("readiness")),
            profile=None if profile is None else Profile.from_dict(profile),
            pull_efficiency=LoadEfficiency.from_dict(pull) if isinstance(pull, dict) and pull else None,
            replay=_object(data.get("replay")) if data.get("replay") is not None else None,
        )


def _list(value: JsonValue, key: str) -> list[JsonValue]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{key}: expected a list, got {value!r}")
    return value


def _object(value: JsonValue) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _phases(value: JsonValue, key: str) -> tuple[Phase, ...]:
    phases = []
    for i, item in enumerate(_list(value, key)):
        if not isinstance(item, dict):
            raise TypeError(f"{key}[{i}]: expected an object, got {item!r}")
        phases.append(Phase.from_dict(item))
    return tuple(phases)


def check_writable(results_dir: Path) -> Path:
    """Create ``results_dir/runs`` and prove we can write there, before any start."""
    runs = results_dir / RUNS_DIR
    try:
        runs.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"results directory {results_dir} is not writable ({exc.strerror}); "
                          "pass --coldstart-results DIR with a writable directory") from None
    return runs


def write_result(results_dir: Path, result: RunResult) -> Path:
    """Write *result* under ``results_dir/runs/`` atomically; never overwrites.

    The JSON goes to a temp file in the same directory, is fsync'ed, then
    renamed: a reader sees the old state or the whole new file, never half.
    """
    runs = check_writable(results_dir)
    stamp = result.started_at.replace(":", "").replace("-", "").split(".")[0]
    name = f"{stamp}_{result.model}_{result.optimization}_{result.launcher}_r{result.repeat_index}_{uuid.uuid4().hex[:6]}.json"
    target = under(runs, name, what="result file name (model, optimization, launcher)")
    # Redacted as a whole: server_argv, error, environment and cache can carry a token or a presigned URL.
    data = Redactor.from_env(os.environ).redact_value(result.to_dict())
    with atomic_path(target, overwrite=False, mode=None) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return target


def load_result(path: Path) -> RunResult:
    """Read one results file, refusing corrupt files and other schema versions."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaVersionError(f"{path}: not a readable results file ({exc}); "
                                 "move it out of the results directory") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise SchemaVersionError(f"{path}: no schema_version; not a pytest-coldstart results file")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: written by a newer pytest-coldstart (schema {version}; this version reads "
            f"{SCHEMA_VERSION}). Upgrade pytest-coldstart, or point --coldstart-results at another "
            "directory. Nothing was written.")
    if version < SCHEMA_VERSION:
        raise SchemaVersionError(f"{path}: schema {version} is older than {SCHEMA_VERSION}; "
                                 "re-run the benchmark or move the file aside")
    problem = validate(data)
    if problem is not None:
        raise SchemaVersionError(f"{path}: {problem}; fix the file or move it aside (out of the results directory)")
    try:
        return RunResult.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaVersionError(f"{path}: missing or malformed field {exc}; move it aside") from None


_REQUIRED_STR = ("model", "optimization", "launcher", "cache_state", "started_at", "log_path", "exit_status")
_SECONDS = ("total_ready_s", "ttft_s", "first_response_s", "unaccounted_s")
_PHASE_SECONDS = ("start_s", "end_s", "duration_s", "reported_s")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad_seconds(value: object) -> str | None:
    """Why *value* is not a finite number of seconds or null (None when it is)."""
    if value is None:
        return None
    if not _is_number(value):
        return f"{value!r} is not a number"
    if not math.isfinite(value):
        return f"{value!r} is not finite"
    return None


def _non_finite_in(value: object, where: str) -> str | None:
    """The first non-finite number nested in *value* (NaN or inf anywhere makes medians and axes meaningless)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} = {value!r} is not finite"
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite_in(v, f"{where}.{k}")
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _non_finite_in(v, f"{where}[{i}]")
            if found:
                return found
    return None


def validate(data: Mapping[str, object]) -> str | None:
    """The first problem of a results file's JSON, as "field X: why", or None if it is well-formed.

    Types and finite numbers are checked here so that a hand-edited or corrupt
    file stops at load with its name and field, not deep inside a median or a
    plot axis.
    """
    for key in _REQUIRED_STR:
        if key not in data:
            return f"field {key!r} is missing"
        if not isinstance(data[key], str):
            return f"field {key!r}: expected a string, got {data[key]!r}"
    if data["exit_status"] not in {s.value for s in ExitStatus}:
        return (f"field 'exit_status': {data['exit_status']!r} is not one of "
                f"{', '.join(s.value for s in ExitStatus)}")
    for key in _SECONDS:
        if key not in data and key != "first_response_s":
            return f"field {key!r} is missing"
        why = _bad_seconds(data.get(key))
        if why:
            return f"field {key!r}: {why}; expected seconds or null"
    for key in ("repeat_index", "server_exit_code"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"field {key!r}: expected an integer, got {value!r}"
    for key in ("error", "last_phase"):
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"field {key!r}: expected a string or null, got {data[key]!r}"
    for key in ("reported", "environment", "env_overrides", "cache"):
        if key in data and not isinstance(data[key], dict):
            return f"field {key!r}: expected an object, got {data[key]!r}"
    for key in ("reported", "environment"):
        if key not in data:
            return f"field {key!r} is missing"
    argv = data.get("server_argv", [])
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return f"field 'server_argv': expected a list of strings, got {argv!r}"
    if data.get("efficiency") is not None and not isinstance(data["efficiency"], dict):
        return f"field 'efficiency': expected an object or null, got {data['efficiency']!r}"
    phases = data.get("phases")
    if not isinstance(phases, list):
        return f"field 'phases': expected a list, got {phases!r}"
    for i, phase in enumerate(phases):
        if not isinstance(phase, dict) or not isinstance(phase.get("name"), str):
            return f"field 'phases[{i}]': expected an object with a name, got {phase!r}"
        if not isinstance(phase.get("source"), str):
            return f"field 'phases[{i}].source': expected a string, got {phase.get('source')!r}"
        for key in _PHASE_SECONDS:
            why = _bad_seconds(phase.get(key))
            if why:
                return f"field 'phases[{i}].{key}' ({phase['name']}): {why}"
    reported = data["reported"]
    for key, value in reported.items() if isinstance(reported, dict) else ():
        if _is_number(value) and not math.isfinite(value):
            return f"field 'reported.{key}': {value!r} is not finite"
    return _non_finite_in(data.get("efficiency"), "field 'efficiency'")


def load_results(results_dir: Path) -> list[RunResult]:
    """Every run under ``results_dir/runs``, oldest first; raises on the first bad file."""
    runs = results_dir / RUNS_DIR
    if not runs.is_dir():
        return []
    return [load_result(p) for p in sorted(runs.glob("*.json"))]
