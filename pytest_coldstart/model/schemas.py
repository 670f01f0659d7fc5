"""One typed schema per input file and flag (pydantic v2), checked before any server starts.

models.toml, optimizations.toml, budgets.toml, compare.toml, servers.toml (``--launcher command``) and the
numeric and name flags each have a schema here; the loaders validate the raw TOML against it first and only
then build their frozen values, so a wrong-typed value (``env`` as a list, ``weight_bytes = "big"``,
``phases = "imports"``, ``metrics = 5``) or a number that is not finite or out of range (``total_ready_s =
nan``, ``--threshold nan``) is refused at load time, before any server: never a traceback, never a value
that reads as "ok" forever, never a failure after a start.

A refusal is one line (:func:`validate`): the file, the table, the key, the bad value and what is allowed,
from the schema's own descriptions (pydantic's error list is not shown as is). Every schema is strict (no
``"1"`` for 1, no ``true`` for 1) and forbids unknown keys.

Imported lazily by the loaders (pydantic costs ~40 ms to import; a session that reads no config pays none).
"""

from __future__ import annotations

import re
import string
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.paths import MACHINE_RULE, MAX_MACHINE, SLUG_RULE, shown, slug_problem

M = TypeVar("M", bound=BaseModel)


def _slug(value: str) -> str:
    problem = slug_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


# ---- shared field types -------------------------------------------------------------------------------------
Slug = Annotated[str, AfterValidator(_slug), Field(description=SLUG_RULE)]


def _machine(value: str) -> str:
    problem = slug_problem(value, MAX_MACHINE)
    if problem is not None:
        raise ValueError(problem)
    return value


MachineName = Annotated[str, AfterValidator(_machine), Field(description=MACHINE_RULE)]
Text = Annotated[str, Field(description="text")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                               description="an environment variable name (letters, digits, _; not starting with a "
                                           "digit)")]
#: An env value or engine argument as TOML writes it; kept as text (``1`` -> ``"1"``), as before.
Scalar = Annotated[str | int | Annotated[float, Field(allow_inf_nan=False)] | bool,
                   Field(description="a string, a number or true/false (not a table or list)")]
PositiveSeconds = Annotated[float, Field(gt=0, le=1e7, allow_inf_nan=False,
                                         description="seconds, a finite number > 0")]
Fraction = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False,
                                  description="a fraction in [0, 10] (0.10 = 10 %), a finite number")]
FloorSeconds = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False,
                                      description="seconds in [0, 1e6], a finite number")]
Alpha = Annotated[float, Field(ge=1e-9, le=0.5, allow_inf_nan=False,
                               description="a significance level in [1e-9, 0.5], a finite number")]
MinSamples = Annotated[int, Field(ge=2, le=10_000, description="an integer >= 2 (starts per side)")]
Gbps = Annotated[float, Field(gt=0, le=1e5, allow_inf_nan=False, description="GB/s, a finite number > 0")]

SOURCE_KINDS = ("generated", "hf", "local", "s3")
SOURCE_RULE = "one of generated:NAME, hf:ORG/NAME, local:PATH, s3://BUCKET/PREFIX, s3:NAME"


def _source(value: str) -> str:
    if value.startswith("s3://"):
        if len(value) <= len("s3://"):
            raise ValueError("no bucket after s3://")
        return value
    kind, sep, rest = value.partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        raise ValueError("not a known kind of source")
    if kind == "generated":  # NAME becomes <workdir>/models/NAME
        problem = slug_problem(rest)
        if problem is not None:
            raise ValueError(f"the NAME of generated:NAME {problem} (NAME: {SLUG_RULE})")
    return value


def _compile_uri(value: str) -> str:
    if value and not value.startswith("s3:"):
        raise ValueError("expected s3://BUCKET/PREFIX or s3:NAME (under the run's S3 location)")
    return value


Source = Annotated[str, AfterValidator(_source), Field(description=SOURCE_RULE)]
FloorKind = Literal["generated", "hf", "local", "s3", "host_to_gpu"]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---- models.toml / optimizations.toml ------------------------------------------------------------------------
class ModelEntry(_Table):
    """``[models.NAME]``."""

    source: Source
    served_name: Annotated[str, Field(min_length=1, description="the name the server serves the model under")]
    tensor_parallel_size: Annotated[int, Field(ge=1, le=4096, description="an integer >= 1")] = 1
    max_model_len: Annotated[int, Field(ge=1, description="an integer >= 1 (tokens)")] | None = None
    weight_bytes: Annotated[int, Field(ge=0, description="the weights' size in bytes, an integer >= 0")] | None = None
    description: Text = ""
    engine_args: Annotated[list[Scalar], Field(description="a list of the server's arguments (strings)")] = []
    env: Annotated[dict[EnvName, Scalar], Field(description="a table of NAME = \"value\"")] = {}
    optimizations: Annotated[list[Slug], Field(description=f"a list of optimization names ({SLUG_RULE})")] = [
        "baseline"]
    sources: Annotated[dict[Slug, Source], Field(description=f"a table of optimization = source ({SOURCE_RULE})")] = {}
    compile_cache_uri: Annotated[str, AfterValidator(_compile_uri),
                                 Field(description="s3://BUCKET/PREFIX or s3:NAME")] = ""
    floor_gbps: Annotated[dict[FloorKind, Gbps],
                          Field(description="a table of source kind (generated, hf, local, s3, host_to_gpu) = GB/s "
                                            "> 0, e.g. { local = 1.5, s3 = 6.0 }")] = {}


class OptimizationEntry(_Table):
    """``[optimizations.NAME]``."""

    description: Text = ""
    cache: Annotated[Literal["cold", "compile", "warm", "image"],
                     Field(description="one of cold, compile, warm, image")] = "cold"
    engine_args: Annotated[list[Scalar], Field(description="a list of the server's arguments (strings)")] = []
    env: Annotated[dict[EnvName, Scalar], Field(description="a table of NAME = \"value\"")] = {}


# ---- budgets.toml --------------------------------------------------------------------------------------------
#: ``[MODEL."OPT"]`` / ``[MODEL."OPT@LAUNCHER"]`` / ``"*"``: names are checked against the registry by the loader.
BudgetKey = Annotated[str, Field(min_length=1, max_length=250, description="a model, optimization or phase name")]


PhaseSeconds = Annotated[dict[BudgetKey, PositiveSeconds], Field(description="a table of phase = seconds")]


class BudgetsFile(RootModel[dict[BudgetKey, Annotated[dict[BudgetKey, PhaseSeconds],
                                                      Field(description="a table of [MODEL.OPTIMIZATION] tables")]]]):
    """``[MODEL.OPT] PHASE = seconds``."""

    model_config = ConfigDict(strict=True, frozen=True)


# ---- compare.toml --------------------------------------------------------------------------------------------
class ThresholdTable(_Table):
    """``[default]`` / ``[metrics.NAME]``."""

    rel_threshold: Fraction | None = None
    abs_floor_s: FloorSeconds | None = None
    ratio_rel_threshold: Fraction | None = None


class CompareFile(_Table):
    alpha: Alpha = 0.05
    min_samples: MinSamples = 4
    default: Annotated[ThresholdTable, Field(description="a table with rel_threshold, abs_floor_s, "
                                                         "ratio_rel_threshold")] = ThresholdTable()
    metrics: Annotated[dict[Annotated[str, Field(min_length=1)], ThresholdTable],
                       Field(description="a table of [metrics.NAME] tables")] = {}
    paired: Annotated[bool, Field(description="true or false")] = False
    paired_rel_threshold: Fraction = 0.05
    power: Annotated[float, Field(ge=0.5, le=0.999, allow_inf_nan=False,
                                  description="a number 0.5-0.999: 'unchanged' only when the change that matters "
                                              "was this likely to be caught")] = 0.95
    on_undecided: Annotated[Literal["fail", "pass"],
                            Field(description='"fail" (exit 2, the default) or "pass" (exit 0, still printed '
                                              'UNDECIDED)')] = "fail"


# ---- servers.toml (--launcher command) ----------------------------------------------------------------------
COMMAND_PLACEHOLDERS = ("python", "model", "served_name", "host", "port", "max_model_len", "tensor_parallel_size")
URL_PLACEHOLDERS = ("host", "port", "base_url")
REQUEST_PLACEHOLDERS = ("model", "served_name")


def _template(allowed: Sequence[str]) -> Callable[[str], str]:
    """A check that *value* is a ``str.format`` template using only *allowed* names (``{port`` is refused)."""
    def check(value: str) -> str:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:  # "{port", "port}": what .format() would raise at start time
            raise ValueError(f"not a valid template ({exc}); write {{NAME}}, and {{{{ }}}} for literal braces") \
                from None
        for name in fields:
            if name not in allowed:
                raise ValueError(f"unknown placeholder {{{name}}}")
        return value
    return check


def _placeholders(allowed: Sequence[str]) -> str:
    return ", ".join("{" + p + "}" for p in allowed)


CommandPart = Annotated[str, AfterValidator(_template(COMMAND_PLACEHOLDERS)),
                        Field(description=f"text with placeholders {_placeholders(COMMAND_PLACEHOLDERS)}")]


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://", "{base_url}")):
        raise ValueError("not an http(s) URL")
    return value


class ServerEntry(_Table):
    """``[servers.NAME]``."""

    description: Text = ""
    command: Annotated[list[CommandPart], Field(min_length=1, description="a non-empty list of strings (the argv "
                                                f"template; placeholders {_placeholders(COMMAND_PLACEHOLDERS)})")]
    readiness_url: Annotated[str, AfterValidator(_template(URL_PLACEHOLDERS)), AfterValidator(_url),
                             Field(min_length=1, description="an http(s) URL that answers 200 once it serves, e.g. "
                                   f"\"{{base_url}}/health\" (placeholders {_placeholders(URL_PLACEHOLDERS)})")]
    phases: Annotated[dict[Slug, Annotated[str, AfterValidator(_regex)]],
                      Field(description="a table of phase name = regex (Python re)")] = {}
    env: Annotated[dict[EnvName, Scalar], Field(description="a table of NAME = \"value\"")] = {}
    tested_here: Annotated[bool, Field(description="true or false")] = False
    ttft_api: Annotated[Literal["completions", "chat"], Field(description="completions or chat")] = "completions"
    request_model: Annotated[str, AfterValidator(_template(REQUEST_PLACEHOLDERS)),
                             Field(description=f"text with placeholders {_placeholders(REQUEST_PLACEHOLDERS)}")] \
        = "{served_name}"


class ServersFile(_Table):
    servers: Annotated[dict[Slug, dict[str, object]], Field(min_length=1, description="[servers.NAME] tables")]


# ---- flags ----------------------------------------------------------------------------------------------------
#: The flags' types: the same ones the files use, so a flag cannot skip a range the file gets.
FLAG_TYPES: dict[str, Any] = {
    "fraction": Fraction,
    "floor_s": FloorSeconds,
    "alpha": Alpha,
    "min_samples": MinSamples,
    "timeout_s": PositiveSeconds,
    "count": Annotated[int, Field(ge=1, le=100_000, description="an integer >= 1")],
    "count0": Annotated[int, Field(ge=0, le=100_000, description="an integer >= 0")],
    "positive": Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False, description="a finite number > 0")],
    "nonnegative": Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False, description="a finite number >= 0")],
    "name": Slug,
    "machine": MachineName,
    "power": Annotated[float, Field(ge=0.5, le=0.999, allow_inf_nan=False, description="a power in [0.5, 0.999]")],
}


# ---- validation with one-line errors --------------------------------------------------------------------------
def validate(schema: type[M], raw: object, *, file: object, table: str = "", table_depth: int = 0) -> M:
    """*raw* checked against *schema*; a refusal is a ``ConfigError`` of one line.

    :param file: the file named in the message.
    :param table: the TOML table *raw* is (``models.fake``); "" for the top level.
    :param table_depth: how many leading keys of an error's location are table names (budgets: model, opt).
    """
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, schema, raw, file=file, table=table, table_depth=table_depth)) from None


def describe(exc: ValidationError, schema: type[BaseModel], raw: object, *, file: object, table: str = "",
             table_depth: int = 0) -> str:
    """The first error of *exc* as ``FILE [TABLE] KEY = VALUE: expected ALLOWED``, plus how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path, value, found = _walk(raw, first["loc"])
    is_key = "[key]" in first["loc"]
    table_depth = max(table_depth, _tables(raw, path, is_key))
    tables = [table] if table else []
    tables += [_toml_key(k) for k in path[:table_depth]]
    keys = path[table_depth:]
    where = f"{file}" + (f" [{'.'.join(t for t in tables if t)}]" if tables else "")
    key = _key_text(keys)
    allowed = _allowed(schema, path, key=is_key)
    kind = first["type"]
    if kind == "extra_forbidden":
        extra = sorted({str(_walk(raw, e["loc"])[0][-1]) for e in errors if e["type"] == "extra_forbidden"
                        and _walk(raw, e["loc"])[0][:-1] == path[:-1]})
        parent = _key_text(keys[:-1])
        text = (f"{where}{' ' + parent if parent else ''}: unknown key(s) {extra}; allowed: "
                f"{', '.join(_field_names(schema, path[:-1])) or 'none'}")
        errors = [e for e in errors if not (e["type"] == "extra_forbidden" and str(_walk(raw, e["loc"])[0][-1]) in extra)]
        errors.insert(0, first)
    elif kind == "missing":
        text = f"{where} {key}: missing; expected {allowed or first['msg'].lower()}"
    else:
        why = ""
        if kind == "value_error" and first.get("ctx", {}).get("error"):
            why = f"{first['ctx']['error']}; "
        elif allowed is None:
            why = f"{first['msg'][0].lower()}{first['msg'][1:]}; "
        shown_value = shown(value if found else first.get("input"))
        if is_key:
            parent = _key_text(keys[:-1])
            target = f"{where} {parent + ' ' if parent else ''}key {shown_value}"
        else:
            target = f"{where} {key} = {shown_value}" if key else f"{where} = {shown_value}"
        text = f"{target}: {why}expected {allowed or 'another value'}"
    more = len({tuple(_walk(raw, e['loc'])[0]) for e in errors}) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''} in the same table)" if more > 0 else "")


def _tables(raw: object, path: Sequence[object], is_key: bool) -> int:
    """How many leading keys of *path* name tables in *raw* (the last key of a value is never one)."""
    depth, node = 0, raw
    limit = len(path) if is_key else len(path) - 1
    for key in path[:limit]:
        if not isinstance(node, Mapping) or not isinstance(node.get(key), Mapping):
            break
        node, depth = node[key], depth + 1
    return depth


def _toml_key(key: object) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else f'"{text}"'


def _key_text(keys: Sequence[object]) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{_toml_key(key)}" if out else _toml_key(key))
    return out


def _walk(raw: object, loc: Sequence[object]) -> tuple[list[object], object, bool]:
    """The real key path of *loc* in *raw* (pydantic adds union member tags to it), the value there, and
    whether it was found."""
    path: list[object] = []
    node = raw
    for part in loc:
        found, child = _child(node, part)
        if found:
            node = child
        elif isinstance(node, Mapping) and part != "[key]" and isinstance(part, str) and not path_tag(part):
            path.append(part)  # a missing key: named, no value
            return path, None, False
        else:
            if part == "[key]":  # the key itself was refused: the value shown is the key
                return path, path[-1] if path else node, True
            continue  # a union member or validator tag
        path.append(part)
    return path, node, True


def _child(node: object, part: object) -> tuple[bool, object]:
    """(True, node[part]) when *node* is a table or list holding *part*, else (False, None)."""
    if isinstance(node, Mapping):
        return (True, node[part]) if part in node else (False, None)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def path_tag(part: str) -> bool:
    """True for the tags pydantic puts in a location for union members (``str``, ``function-after[...]``)."""
    return part in ("str", "int", "float", "bool") or "[" in part


def _strip(tp: Any) -> tuple[Any, str | None]:
    """*tp* without Annotated/Optional wrappers, and the description found on the way."""
    description = None
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            args = typing.get_args(tp)
            for meta in args[1:]:
                if isinstance(meta, FieldInfo) and meta.description:
                    description = meta.description
            tp = args[0]
        elif origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp, description
            tp = members[0]
        else:
            return tp, description


def _allowed(schema: Any, path: Sequence[object], *, key: bool = False) -> str | None:
    """The description of what may stand at *path* in *schema* (the innermost one found); with *key*, of
    what may name the entry at *path* (a dict's key type)."""
    tp: Any = schema
    found: str | None = None
    for i, key_ in enumerate(path):
        if key and i == len(path) - 1:
            tp, description = _strip(tp)
            args = typing.get_args(tp)
            if typing.get_origin(tp) in (dict, Mapping) and len(args) == 2:
                inner, description = _strip(args[0])
                if description is None and typing.get_origin(inner) is Literal:
                    description = "one of " + ", ".join(str(a) for a in typing.get_args(inner))
                return description
            return found
        tp, description = _strip(tp)
        found = description or found
        if isinstance(tp, type) and issubclass(tp, RootModel):
            tp = tp.model_fields["root"].annotation
            tp, description = _strip(tp)
            found = description or found
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(key_))
            if field is None:
                return found
            found = field.description or found
            tp = field.annotation
            continue
        args = typing.get_args(tp)
        origin = typing.get_origin(tp)
        if origin in (dict, Mapping) and len(args) == 2:
            tp = args[1]
        elif origin in (list, Sequence, tuple) and args:
            tp = args[0]
        else:
            return found
    tp, description = _strip(tp)
    return description or found


def _field_names(schema: Any, path: Sequence[object]) -> list[str]:
    tp: Any = schema
    for key in path:
        tp, _ = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(key))
            tp = field.annotation if field is not None else None
        else:
            args = typing.get_args(tp)
            tp = args[-1] if args else None
    tp, _ = _strip(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def parse_flag(kind: str, text: str, example: str) -> object:
    """*text* of a flag as its ``FLAG_TYPES[kind]``; a ``ValueError`` saying what is allowed, in one line."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(FLAG_TYPES[kind])
    try:
        return adapter.validate_python(text.strip(), strict=False)
    except ValidationError as exc:
        allowed = _strip(FLAG_TYPES[kind])[1]
        error = exc.errors(include_url=False)[0]
        why = f": {error['ctx']['error']}" if error["type"] == "value_error" else ""
        raise ValueError(f"Could not parse value: {shown(text)}{why}. Expected {allowed}, e.g. {example}") from None
