"""JSON values as types: what results files hold, without ``Any``.

``JsonValue`` is what ``json.loads`` can return; ``JsonObject`` one object. The checkers turn a
``JsonValue`` into the Python type a record field promises, or raise ``TypeError`` naming the key
(``load_result`` turns that into "move the file aside" with the file's name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Union

#: A JSON value: null, true/false, a number, a string, an array or an object. Union, not |: a runtime
#: alias with forward references ("JsonValue" | None fails before Python 3.12's ``type``).
JsonValue = Union[None, bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"]]  # noqa: UP007
#: A JSON object.
JsonObject = dict[str, JsonValue]


def opt_float(value: JsonValue, key: str) -> float | None:
    """A finite number (seconds, GiB, ...) or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key}: expected a number or null, got {value!r}")
    if not math.isfinite(value):
        raise TypeError(f"{key}: {value!r} is not finite")
    return value


def opt_int(value: JsonValue, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key}: expected an integer or null, got {value!r}")
    return value


def opt_str(value: JsonValue, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key}: expected a string or null, got {value!r}")
    return value


def opt_bool(value: JsonValue, key: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise TypeError(f"{key}: expected true, false or null, got {value!r}")
    return value


def str_list(value: JsonValue, key: str) -> tuple[str, ...]:
    """A list of strings; missing (null) is empty."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


def opt_object(value: JsonValue, key: str) -> JsonObject | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"{key}: expected an object or null, got {value!r}")
    return value


def str_map(value: JsonValue, key: str) -> dict[str, str]:
    """An object of strings; missing (null) is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError(f"{key}: expected an object of strings, got {value!r}")
    return {k: str(v) for k, v in value.items()}


def as_object(value: object, key: str) -> JsonObject:
    """*value* (from ``json.loads`` or a record's own dict) as a JSON object; ``TypeError`` if it is not one."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{key}: expected an object, got {value!r}")
    return {str(k): _json(v, f"{key}.{k}") for k, v in value.items()}


def _json(value: object, key: str) -> JsonValue:
    """*value* checked to be JSON (tuples become lists, as ``json.dumps`` writes them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _json(v, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"{key}: {type(value).__name__} is not a JSON value")
