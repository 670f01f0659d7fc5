"""The JSON Schema of a results file (``results/runs/*.json``), as ``coldstart schema result`` prints it.

Built from the types: every ``RunResult`` field has its entry below (a test fails when a field has none,
or an entry has no field), the sub-records' keys come from their ``Key`` declarations (model/records.py),
and the phase and efficiency shapes sit next to their ``to_dict``. Units are in the names (``_s`` seconds,
``_gib`` GiB, ``_gbps`` GB/s = 1e9 B/s, ``_bytes``) and in each description.

Files of this schema version only: a file is first read by ``schema_version`` (``load_result`` refuses
other versions with a next step). The sub-records stay open (a later version may add keys); the result
itself is closed, so a misspelt field is caught.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pytest_coldstart.model.case import ExitStatus
from pytest_coldstart.model.jsonvalue import (
    JsonObject,
    JsonValue,
    opt_bool,
    opt_float,
    opt_int,
    opt_object,
    opt_str,
    str_list,
    str_map,
)
from pytest_coldstart.model.phase import PhaseSource
from pytest_coldstart.model.records import RECORDS, JsonRecord, Key, top_by_phase
from pytest_coldstart.model.result import SCHEMA_VERSION

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:pytest-coldstart:schema:result:{version}"


def _nullable(schema: JsonObject) -> JsonObject:
    return {"anyOf": [schema, {"type": "null"}]}


NUMBER: JsonObject = {"type": "number"}
SECONDS: JsonObject = {"type": ["number", "null"], "minimum": 0}
#: ``unaccounted_s`` and differences may be negative by rounding; still seconds or null.
SIGNED_SECONDS: JsonObject = {"type": ["number", "null"]}
STRING: JsonObject = {"type": "string"}
STRINGS: JsonObject = {"type": "array", "items": STRING}

#: The JSON type each record checker promises.
_CHECKED: Mapping[Callable[..., object], JsonObject] = {
    opt_float: {"type": ["number", "null"]},
    opt_int: {"type": ["integer", "null"]},
    opt_str: {"type": ["string", "null"]},
    opt_bool: {"type": ["boolean", "null"]},
    str_list: _nullable(STRINGS),
    str_map: _nullable({"type": "object", "additionalProperties": STRING}),
    opt_object: {"type": ["object", "null"]},
    top_by_phase: _nullable({"type": "object", "additionalProperties": {"type": "array", "items": {
        "type": "object", "required": ["function", "self_s"],
        "properties": {"function": STRING, "self_s": {**NUMBER, "description": "seconds on the stack"}}}}}),
}


def record_schema(record: type[JsonRecord], description: str) -> JsonObject:
    """An open object with every key the record knows, typed by its checker and described by its doc."""
    properties: JsonObject = {}
    for name in record.keys_known():
        key = getattr(record, name)  # the Key itself: read from the class, not an instance
        assert isinstance(key, Key)
        properties[name] = {**_CHECKED[key.check], "description": key.doc}
    return {"type": "object", "description": description, "properties": properties, "additionalProperties": True}


PHASE: JsonObject = {
    "type": "object", "required": ["name", "start_s", "end_s", "duration_s", "source"],
    "additionalProperties": False,
    "properties": {
        "name": {**STRING, "description": "the phase (imports, config, weights_load, ... ready)"},
        "start_s": {**SIGNED_SECONDS, "description": "seconds since spawn when it started; null: not observed"},
        "end_s": {**SIGNED_SECONDS, "description": "seconds since spawn when it ended; null: not observed"},
        "duration_s": {**SIGNED_SECONDS, "description": "end_s - start_s; null: not observed (never zero for that)"},
        "source": {"enum": [str(s) for s in PhaseSource], "description": "how its times were obtained"},
        "reported_s": {**SIGNED_SECONDS, "description": "what the server itself reported for it, seconds"},
    },
}

_HOST_TO_GPU: JsonObject = _nullable({
    "type": "object", "required": ["pinned_gbps"],
    "properties": {
        "pinned_gbps": {**NUMBER, "exclusiveMinimum": 0, "description": "pinned host RAM -> GPU, GB/s (the floor)"},
        "pageable_gbps": {"type": ["number", "null"], "description": "pageable host RAM -> GPU, GB/s"},
        "source": {**STRING, "description": "probe or configured"},
        "detail": STRING,
        "floor_s": {**SIGNED_SECONDS, "description": "seconds the weights take at that floor"},
        "percent": {"type": ["number", "null"], "description": "achieved / pinned_gbps, percent"},
    },
})

EFFICIENCY: JsonObject = _nullable({
    "type": "object", "description": "the weight load against the floor of its source (null: not assessed)",
    "properties": {
        "weight_bytes": {"type": ["integer", "null"], "description": "bytes of weights loaded"},
        "load_s": {**SIGNED_SECONDS, "description": "seconds the load took"},
        "load_basis": {"type": ["string", "null"], "description": "which phase or report load_s comes from"},
        "source_kind": {"type": ["string", "null"], "description": "local, hf, s3, registry, ..."},
        "achieved_gbps": {"type": ["number", "null"], "description": "weight_bytes / load_s, GB/s"},
        "floor_gbps": {"type": ["number", "null"], "description": "the source's floor, GB/s"},
        "floor_source": {"type": ["string", "null"], "description": "configured, probe, ..."},
        "floor_detail": STRING,
        "floor_s": {**SIGNED_SECONDS, "description": "seconds the weights take at the floor"},
        "percent_of_floor": {"type": ["number", "null"], "description": "achieved_gbps / floor_gbps, percent"},
        "note": {**STRING, "description": "why a number is missing"},
        "host_to_gpu": _HOST_TO_GPU,
        "host_to_gpu_note": STRING,
        "resident_share": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                           "description": "share of the weights in the page cache right before the start"},
        "floor_applies": {"type": ["string", "null"], "description": "host_to_gpu or storage"},
    },
})

_PHASES: JsonObject = {"type": "array", "items": {"$ref": "#/$defs/phase"}}


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/$defs/{name}"}


#: Every field of a results file: its schema and what it means (units in the words).
FIELDS: Mapping[str, tuple[JsonObject, str]] = {
    "schema_version": ({"type": "integer"}, "the results format's version; readers refuse others"),
    "model": (STRING, "the model's name in models.toml"),
    "optimization": (STRING, "the optimization's name in optimizations.toml (baseline, compile_cache, ...)"),
    "launcher": (STRING, "what started the server (vllm, ray-serve, docker, command, ...)"),
    "cache_state": (STRING, "cold or warm: the caches the start got"),
    "repeat_index": ({"type": "integer", "minimum": 0}, "which repeat of the case (0-based)"),
    "started_at": (STRING, "wall-clock start, ISO 8601 with its UTC offset"),
    "exit_status": ({"enum": [str(s) for s in ExitStatus]},
                    "ok; the server's failures server_exited, timeout, unhealthy; the harness's interrupted, "
                    "harness_error, preflight_failed (error: files from before that split)"),
    "server_exit_code": ({"type": ["integer", "null"]}, "the server's exit code when it exited by itself"),
    "error": ({"type": ["string", "null"]}, "why the start failed, with the next step"),
    "last_phase": ({"type": ["string", "null"]}, "the last phase the start reached"),
    "total_ready_s": (SECONDS, "seconds from spawn to the first healthy answer (ready); null: never ready"),
    "ttft_s": (SECONDS, "seconds from the first request (sent once ready) to its first streamed token"),
    "first_response_s": (SECONDS, "seconds from the first request to its whole response"),
    "unaccounted_s": (SIGNED_SECONDS, "seconds of total_ready_s no phase covers: phases + this = total"),
    "phases": (_PHASES, "the startup phases in order, stamped on arrival on a monotonic clock"),
    "reported": (_ref("reported"), "what the server reported about its own start, kept beside the phases"),
    "environment": (_ref("environment"), "everything that can explain a difference between two runs"),
    "log_path": (STRING, "the server's log file"),
    "server_argv": (STRINGS, "the server's command line (secrets masked)"),
    "env_overrides": ({"type": "object", "additionalProperties": STRING},
                      "the environment the harness set for the server (secret-looking values masked)"),
    "cache": (_ref("cache"), "the caches of the start: policy, store, what was cleared, kept, fresh or warm"),
    "efficiency": (EFFICIENCY, "weight-load efficiency against the source's floor"),
    "sub_phases": ({"type": "object", "additionalProperties": _PHASES},
                   "parent phase -> its sub-phases from the in-vLLM probe (they sum to the parent)"),
    "phase_agreement": (_nullable({"type": "array", "items": _ref("phase_agreement")}),
                        "probe vs log lines vs the server's reports, where they differ by more than "
                        "max(0.1 s, 3 %); empty: all agreed; null or absent: no probe events"),
    "log_phases": (_PHASES, "the phases from log lines alone, when the probe's edges replaced some"),
    "probe": (_ref("probe"), "the in-vLLM probe: its events file, event count, targets missing in this vLLM"),
    "correct": ({"type": ["boolean", "null"]},
                "the first greedy completion matched the recorded oracle; null: no oracle yet or not checked"),
    "warm_s": (SECONDS, "seconds from ready until request latency settled; null: not measured or never settled"),
    "readiness": (_ref("readiness"), "how correct and warm_s were decided"),
    "profile": (_nullable(_ref("profile")), "--coldstart-profile: py-spy's top functions per phase"),
    "pull_efficiency": (EFFICIENCY, "docker starts: the image pull against the registry's floor "
                                    "(weight_bytes: the image's compressed layer bytes)"),
    "replay": ({"type": ["object", "null"]},
               "--coldstart-launcher replay: the recorded log and its sha256, the speed factor, the phase rules "
               "and the replay's time resolution; absent or null for a live start"),
}

#: Present in every results file of this version (the rest came later or only when they apply).
REQUIRED = ("schema_version", "model", "optimization", "launcher", "cache_state", "started_at", "phases",
            "reported", "total_ready_s", "ttft_s", "unaccounted_s", "environment", "exit_status", "log_path")


def result_schema() -> JsonObject:
    """The JSON Schema (draft 2020-12) of one results file of this version."""
    properties: JsonObject = {name: {**schema, "description": doc} for name, (schema, doc) in FIELDS.items()}
    properties["schema_version"] = {"const": SCHEMA_VERSION, "description": FIELDS["schema_version"][1]}
    defs: JsonObject = {"phase": PHASE}
    for name, record in RECORDS.items():
        doc = (record.__doc__ or "").strip().splitlines()[0]
        defs[name] = record_schema(record, doc)
    required: list[JsonValue] = list(REQUIRED)
    return {
        "$schema": DIALECT, "$id": SCHEMA_ID.format(version=SCHEMA_VERSION),
        "title": "pytest-coldstart result", "description": "One cold start (or one failed attempt), "
        "results/runs/*.json. Seconds on the harness's monotonic clock unless named otherwise.",
        "type": "object", "required": required, "properties": properties, "additionalProperties": False,
        "$defs": defs,
    }


#: ``coldstart schema NAME``: the schemas the code publishes.
SCHEMAS: Mapping[str, Callable[[], JsonObject]] = {"result": result_schema}
