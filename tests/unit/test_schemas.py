"""model/schemas.py: each input's schema refuses what it should, in one line naming file, table, key, value
and what is allowed (never pydantic's own error list)."""

from __future__ import annotations

import pytest

from pytest_coldstart.model import schemas
from pytest_coldstart.model.errors import ConfigError

MODEL = {"source": "generated:tiny", "served_name": "m"}
SERVER = {"command": ["srv", "--port", "{port}"], "readiness_url": "{base_url}/health"}


@pytest.mark.parametrize(("schema", "raw", "kwargs", "message"), [
    (schemas.ModelEntry, {**MODEL, "env": ["A=1"]}, {"table": "models.m"},
     "F.toml [models.m] env = ['A=1']: expected a table of NAME = \"value\""),
    (schemas.ModelEntry, {**MODEL, "weight_bytes": "big"}, {"table": "models.m"},
     "F.toml [models.m] weight_bytes = 'big': expected the weights' size in bytes, an integer >= 0"),
    (schemas.ModelEntry, {**MODEL, "weight_bytes": True}, {"table": "models.m"},
     "weight_bytes = True: expected the weights' size in bytes"),  # strict: a bool is no integer
    (schemas.ModelEntry, {**MODEL, "env": {"A": [1]}}, {"table": "models.m"},
     "F.toml [models.m.env] A = [1]: expected a string, a number or true/false"),
    (schemas.ModelEntry, {**MODEL, "env": {"A B": "1"}}, {"table": "models.m"},
     "F.toml [models.m.env] key 'A B': expected an environment variable name"),
    (schemas.ModelEntry, {**MODEL, "source": "generated:../x"}, {"table": "models.m"},
     "source = 'generated:../x': the NAME of generated:NAME contains a path separator"),
    (schemas.ModelEntry, {**MODEL, "source": "ftp:x"}, {"table": "models.m"},
     "source = 'ftp:x': not a known kind of source; expected one of generated:NAME, hf:ORG/NAME"),
    (schemas.ModelEntry, {**MODEL, "optimizations": ["a/../b"]}, {"table": "models.m"},
     "optimizations[0] = 'a/../b': contains a path separator; expected a name of 1-64 letters"),
    (schemas.ModelEntry, {**MODEL, "floor_gbps": {"s3": float("nan")}}, {"table": "models.m"},
     "[models.m.floor_gbps] s3 = nan: expected GB/s, a finite number > 0"),
    (schemas.ModelEntry, {**MODEL, "colour": 1}, {"table": "models.m"},
     "F.toml [models.m]: unknown key(s) ['colour']; allowed: source, served_name,"),
    (schemas.ModelEntry, {"source": "hf:a/b"}, {"table": "models.m"},
     "F.toml [models.m] served_name: missing; expected the name the server serves the model under"),
    (schemas.OptimizationEntry, {"cache": "tepid"}, {"table": "optimizations.o"},
     "F.toml [optimizations.o] cache = 'tepid': expected one of cold, compile, warm, image"),
    (schemas.BudgetsFile, {"m": {"*": {"total_ready_s": float("nan")}}}, {"table_depth": 2},
     'F.toml [m."*"] total_ready_s = nan: expected seconds, a finite number > 0'),
    (schemas.BudgetsFile, {"m": {"*": {"imports": True}}}, {"table_depth": 2},
     'F.toml [m."*"] imports = True: expected seconds, a finite number > 0'),
    (schemas.BudgetsFile, {"m": {"*": 5}}, {"table_depth": 2}, 'F.toml [m."*"] = 5: expected a table of phase = seconds'),
    (schemas.CompareFile, {"metrics": 5}, {}, "F.toml metrics = 5: expected a table of [metrics.NAME] tables"),
    (schemas.CompareFile, {"alpha": float("nan")}, {}, "F.toml alpha = nan: expected a significance level in [1e-9, 0.5]"),
    (schemas.CompareFile, {"metrics": {"ttft_s": {"abs_floor_s": -1}}}, {},
     "F.toml [metrics.ttft_s] abs_floor_s = -1: expected seconds in [0, 1e6], a finite number"),
    (schemas.CompareFile, {"paired": 1}, {}, "F.toml paired = 1: expected true or false"),
    (schemas.ServerEntry, {**SERVER, "command": ["srv", "{port"]}, {"table": "servers.s"},
     "F.toml [servers.s] command[1] = '{port': not a valid template"),
    (schemas.ServerEntry, {**SERVER, "command": ["srv", "{port.real}"]}, {"table": "servers.s"},
     "command[1] = '{port.real}': unknown placeholder {port.real}"),
    (schemas.ServerEntry, {**SERVER, "phases": "imports"}, {"table": "servers.s"},
     "F.toml [servers.s] phases = 'imports': expected a table of phase name = regex"),
    (schemas.ServerEntry, {**SERVER, "phases": {"a": "("}}, {"table": "servers.s"},
     "F.toml [servers.s.phases] a = '(': not a valid regular expression"),
])
def test_a_refusal_is_one_line_naming_file_table_key_value_and_what_is_allowed(
        schema: type, raw: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        schemas.validate(schema, raw, file="F.toml", **kwargs)
    text = str(exc.value)
    assert message in text and "\n" not in text, text
    assert "pydantic" not in text and "Input should be" not in text, text


def test_good_entries_pass_and_keep_their_values() -> None:
    entry = schemas.validate(schemas.ModelEntry, {**MODEL, "engine_args": ["--n", 8], "env": {"A": 1}}, file="F")
    assert entry.engine_args == ["--n", 8] and entry.env == {"A": 1}  # the loader turns them into text, as before
    assert schemas.validate(schemas.ServerEntry, SERVER, file="F").command == ["srv", "--port", "{port}"]


@pytest.mark.parametrize(("kind", "text", "value"), [("fraction", "0.2", 0.2), ("floor_s", "0", 0.0), ("count", "3", 3),
                                                     ("name", "cpu-2x-EPYC_7B13.a", "cpu-2x-EPYC_7B13.a")])
def test_flags_parse_like_the_files(kind: str, text: str, value: object) -> None:
    assert schemas.parse_flag(kind, text, "e.g.") == value


@pytest.mark.parametrize(("kind", "text"), [("fraction", "nan"), ("fraction", "11"), ("floor_s", "-inf"),
                                            ("alpha", "0"), ("min_samples", "1"), ("timeout_s", "inf"),
                                            ("count", "0"), ("name", ".."), ("name", "a/b")])
def test_flags_refuse_what_the_files_refuse(kind: str, text: str) -> None:
    with pytest.raises(ValueError, match=rf"Could not parse value: '{__import__('re').escape(text)}'.*Expected"):
        schemas.parse_flag(kind, text, "e.g.")
