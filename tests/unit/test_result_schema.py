"""The results JSON Schema (`coldstart schema result`) against the types and every stored results file.

The schema is built from the types (model/schema.py); these tests keep the hand-written parts (top-level
fields, phase, efficiency) in sync with RunResult and its to_dict, and check that every results file the
repository holds (old ones included) is valid and reads and writes back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from pytest_coldstart.cli import main
from pytest_coldstart.model.records import RECORDS, Reported
from pytest_coldstart.model.result import RunResult, load_result
from pytest_coldstart.model.schema import FIELDS, REQUIRED, result_schema
from tests.conftest import DATA

STORED = sorted(DATA.glob("**/runs/*.json"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = result_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_repository_holds_results_files_of_every_era():
    names = {p.parent.parent.name for p in STORED}
    assert len(STORED) >= 50 and {"cpu-lane", "h100-llama70b", "pre-efficiency", "baseline"} <= names


@pytest.mark.parametrize("path", STORED, ids=lambda p: f"{p.parent.parent.name}/{p.name[:40]}")
def test_every_stored_result_is_valid_and_reads_back_unchanged(path: Path, validator):
    data = json.loads(path.read_text(encoding="utf-8"))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, errors
    written = load_result(path).to_dict()
    assert not list(validator.iter_errors(written))
    if "efficiency" not in data:  # files from before it: written back with an explicit null, as before
        assert written.pop("efficiency") is None
    assert written == data  # an old file writes back as it was (no key added, none lost)


def test_every_runresult_field_is_in_the_schema_and_no_other():
    names = {f.name for f in dataclasses.fields(RunResult)}
    assert set(FIELDS) == names | {"schema_version"}
    no_default = {f.name for f in dataclasses.fields(RunResult)
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    # first_response_s came later: files from before it lack it (RunResult reads it as None).
    assert set(REQUIRED) == (no_default - {"first_response_s"}) | {"schema_version"}
    assert all(doc for _, doc in FIELDS.values())


def test_every_record_key_is_typed_and_described_in_the_schema():
    defs = result_schema()["$defs"]
    for name, record in RECORDS.items():
        properties = defs[name]["properties"]
        assert list(properties) == list(record.keys_known()), name
        assert all(p["description"] for p in properties.values()), name


def test_a_full_result_written_by_this_version_is_valid(validator):
    # Every optional part set: sub-phases, probe, readiness, profile, agreement, pull efficiency.
    [path] = [p for p in STORED if "compile_cache" in p.name and "cpu-lane" in str(p)][:1]
    base = load_result(path)
    full = RunResult.from_dict({
        **base.to_dict(), "sub_phases": {"weights_load": [p.to_dict() for p in base.phases[:2]]},
        "phase_agreement": [{"name": "weights_load", "source": "plugin", "plugin_s": 1.0, "other": "log",
                             "other_s": 1.3, "diff_s": -0.3}],
        "log_phases": [p.to_dict() for p in base.phases], "correct": True, "warm_s": 0.4,
        "probe": {"events_path": "/x/events.jsonl", "events": 12, "missing": [], "edges": {"weights_load": "plugin"}},
        "readiness": {"correct": {"oracle": "k", "match": True}, "warm": {"warm_s": 0.4}},
        "profile": {"speedscope": "/x/p.json", "rate_hz": 250, "processes": 3, "sampled_s": 12.5,
                    "top_by_phase": {"weights_load": [{"function": "load (safetensors)", "self_s": 0.8}]}},
        "pull_efficiency": base.to_dict()["efficiency"],
    })
    assert not [e.message for e in validator.iter_errors(full.to_dict())]
    assert full.profile is not None and full.profile.top_by_phase == {"weights_load": (("load (safetensors)", 0.8),)}
    assert full.probe.edges == {"weights_load": "plugin"} and full.phase_agreement[0].diff_s == -0.3


@pytest.mark.parametrize(("field", "value"), [
    ("total_ready_s", "abc"), ("exit_status", "fine"), ("phases", [{"name": "x"}]), ("environment", []),
    ("reported", {"weights_load_s": "1.2"}), ("misspelt_field", 1), ("repeat_index", -1),
])
def test_the_schema_refuses_a_bad_file(field, validator, value):
    data = json.loads(STORED[0].read_text(encoding="utf-8"))
    data[field] = value
    assert list(validator.iter_errors(data)), f"{field}={value!r} passed"


def test_records_are_typed_and_checked_on_the_way_in():
    reported = Reported.from_dict({"weights_load_s": 1.5, "kv_cache_tokens": 4096, "ray_replica_init_s": 3.0})
    assert reported.weights_load_s == 1.5 and reported.kv_cache_tokens == 4096 and reported.torch_compile_s is None
    assert reported["ray_replica_init_s"] == 3.0  # keys this version does not know are kept, by key
    with pytest.raises(TypeError, match="reported.weights_load_s"):
        Reported.from_dict({"weights_load_s": "slow"})


def test_coldstart_schema_prints_the_schema(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == result_schema() and printed["properties"]["total_ready_s"]["description"]
    assert main(["schema", "result"]) == 0
