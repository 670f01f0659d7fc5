"""Models and optimizations: the packaged defaults, overridden entry by entry by a repository's
``benchmarks/models.toml`` and ``benchmarks/optimizations.toml``, read into frozen values.

The defaults ship inside the package (``pytest_coldstart/defaults/*.toml``, read through
importlib.resources), so an installed plugin works in any repository; a repository's file adds
entries and overrides keys of an entry it names again. ``s3:NAME`` sources are relative to the
run's S3 location (``--coldstart-s3`` / ``COLDSTART_S3_URI``), bound by ``bind_s3``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml
from pytest_coldstart.model.paths import SLUG_RULE, shown, slug_problem

CACHE_POLICIES = tuple(p.value for p in CachePolicy)
SOURCE_KINDS = ("generated", "hf", "local", "s3")
#: Environment variable naming the S3 location (s3://BUCKET/PREFIX) that ``s3:NAME`` sources live under.
S3_LOCATION_ENV = "COLDSTART_S3_URI"
S3_ADVICE = (f"set {S3_LOCATION_ENV}=s3://BUCKET/PREFIX (or --coldstart-s3) and AWS credentials "
             "(standard AWS chain; docs: How-to > S3 optimizations)")


def packaged_file(name: str) -> Path:
    """A default file shipped in ``pytest_coldstart/defaults`` (models, optimizations, budgets, compare)."""
    return Path(str(resources.files("pytest_coldstart").joinpath("defaults").joinpath(name)))


def is_relative_s3(ref: str) -> bool:
    """``s3:NAME`` (relative to the run's S3 location), not ``s3://BUCKET/...``."""
    return ref.startswith("s3:") and not ref.startswith("s3://")


def s3_location(explicit: str = "") -> str | None:
    """The run's S3 location: *explicit* (``--coldstart-s3``), else ``COLDSTART_S3_URI``; None if neither."""
    value = (explicit or os.environ.get(S3_LOCATION_ENV, "")).strip().rstrip("/")
    if not value:
        return None
    if not value.startswith("s3://") or len(value) <= len("s3://"):
        raise ConfigError(f"S3 location {value!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """One model the suite can start."""

    name: str
    source: str
    served_name: str
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    weight_bytes: int | None = None
    description: str = ""
    engine_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    optimizations: tuple[str, ...] = ("baseline",)
    sources: tuple[tuple[str, str], ...] = ()
    #: s3://BUCKET/PREFIX under which the torch.compile cache is pushed and fetched (compile_cache.py).
    compile_cache_uri: str = ""
    #: Floor bandwidth in GB/s per source kind (``floor_gbps = { s3 = 6.0 }``), for load efficiency.
    floor_gbps: tuple[tuple[str, float], ...] = ()

    def source_for(self, optimization: str) -> str:
        """The weight source under *optimization* (falls back to ``source``)."""
        return dict(self.sources).get(optimization, self.source)

    def unbound_s3(self, optimization: str) -> str | None:
        """The ``s3:NAME`` source of *optimization* when no S3 location has been bound to it, else None."""
        ref = self.source_for(optimization)
        return ref if is_relative_s3(ref) else None

    @property
    def generated(self) -> bool:
        return self.source.startswith("generated:")


@dataclass(frozen=True)
class OptimizationSpec:
    """Engine args + env + a cache policy."""

    name: str
    description: str = ""
    cache: CachePolicy = CachePolicy.COLD
    engine_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    optimizations: dict[str, OptimizationSpec] = field(default_factory=dict)

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(f"unknown model {name!r}; known models: {', '.join(self.models)}") from None

    def optimization(self, name: str) -> OptimizationSpec:
        try:
            return self.optimizations[name]
        except KeyError:
            known = ", ".join(self.optimizations)
            raise ConfigError(f"unknown optimization {name!r}; known optimizations: {known}") from None


def split_source(source: str) -> tuple[str, str]:
    """``"hf:org/name"`` -> ``("hf", "org/name")``; ``s3://b/p`` -> ``("s3", "s3://b/p")``.

    An unbound ``s3:NAME`` gives ``("s3", "s3:NAME")``; the S3 source refuses it with advice.
    """
    if source.startswith("s3://"):
        return "s3", source
    if is_relative_s3(source) and len(source) > 3:
        return "s3", source
    kind, sep, rest = source.partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        raise ConfigError(f"bad model source {source!r}: expected one of "
                          "generated:NAME, hf:ORG/NAME, local:PATH, s3://BUCKET/PREFIX")
    return kind, rest


_SpecT = TypeVar("_SpecT", "ModelSpec", "OptimizationSpec")


def _build(cls: type[_SpecT], name: str, raw: dict[str, Any], where: str) -> _SpecT:
    # The schema first (model/schemas.py): every key typed, every number finite and in range, every name
    # that becomes a path a safe slug, one line naming file, table and key. Imported here, not at the top:
    # a session that reads no registry pays nothing for pydantic.
    from pytest_coldstart.model import schemas

    table = "models" if cls is ModelSpec else "optimizations"
    schemas.validate(schemas.ModelEntry if cls is ModelSpec else schemas.OptimizationEntry, raw, file=where,
                     table=f"{table}.{name}")
    values = dict(raw)
    for key in ("engine_args", "optimizations"):
        if key in values:
            values[key] = tuple(str(v) for v in values[key])
    for key in ("env", "sources"):
        if key in values:
            values[key] = tuple(sorted((str(k), str(v)) for k, v in values[key].items()))
    if "floor_gbps" in values:
        values["floor_gbps"] = _floor_gbps(values["floor_gbps"], f"{where} [{name}]")
    try:
        return cls(name=name, **values)
    except TypeError as exc:
        raise ConfigError(f"{where} [{name}]: {exc}") from None


#: ``floor_gbps`` keys: a source kind (its storage floor) or ``host_to_gpu`` (weights from RAM: pinned host->GPU copy).
FLOOR_KINDS = (*SOURCE_KINDS, "host_to_gpu")


def _floor_gbps(raw: Any, where: str) -> tuple[tuple[str, float], ...]:
    example = "e.g. floor_gbps = { local = 1.5, s3 = 6.0, host_to_gpu = 55.3 }"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: floor_gbps must be a table of source kind -> GB/s, {example}")
    floors = []
    for kind, value in raw.items():
        if kind not in FLOOR_KINDS:
            raise ConfigError(f"{where}: floor_gbps.{kind}: unknown source kind; expected one of {FLOOR_KINDS}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{where}: floor_gbps.{kind} = {value!r}: expected a number of GB/s > 0, {example}")
        floors.append((kind, float(value)))
    return tuple(sorted(floors))


def _overlay(base: dict[str, Any], base_where: dict[str, str], path: Path, table: str) -> None:
    """Merge ``[table.NAME]`` entries of *path* into *base*: new names added, known ones key by key."""
    tables = load_toml(path, "registry file").get(table, {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: {table} = {shown(tables)}: expected [{table}.NAME] tables")
    for name, raw in tables.items():
        problem = slug_problem(name)
        if problem is not None:  # the name becomes part of result, log and cache paths
            raise ConfigError(f"{path}: [{table}.{shown(name)}]: the name {problem}; allowed: {SLUG_RULE}")
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: [{table}.{name}] = {shown(raw)}: expected a table")
        merged = {**base.get(name, {}), **raw}
        base[name] = merged
        base_where[name] = f"{base_where[name]} + {path}" if name in base_where else str(path)


def _overlay_installed(base: dict[str, Any], base_where: dict[str, str]) -> None:
    """Add the optimizations installed packages declare (``pytest_coldstart.optimizations`` entry points)."""
    from pytest_coldstart.model.entry_points import OPTIMIZATIONS_GROUP, installed, load, origin

    for entry in installed(OPTIMIZATIONS_GROUP):
        if entry.name in base:
            raise ConfigError(f"{origin(entry)}: {entry.name!r} is a packaged optimization; give it another name")
        spec = load(entry)
        if not isinstance(spec, OptimizationSpec) or spec.name != entry.name:
            raise ConfigError(f"{origin(entry)}: expected a pytest_coldstart.model.registry.OptimizationSpec "
                              f"named {entry.name!r}, got {spec!r}")
        base[entry.name] = {"description": spec.description, "cache": str(spec.cache),
                            "engine_args": list(spec.engine_args), "env": dict(spec.env)}
        base_where[entry.name] = origin(entry)


def registry_files(directory: Path | None) -> list[Path]:
    """The files a registry is read from, packaged defaults first (for messages and ``--version``)."""
    files = [packaged_file("optimizations.toml"), packaged_file("models.toml")]
    if directory is not None:
        files += [f for f in (directory / "optimizations.toml", directory / "models.toml") if f.is_file()]
    return files


def load_registry(directory: Path | None, *, required: bool = False, packaged: bool = True,
                  bind: bool = True) -> Registry:
    """The packaged models and optimizations, overridden by ``models.toml`` / ``optimizations.toml`` in *directory*.

    :param directory: a repository's registry directory (``benchmarks``); either file may be absent.
    :param required: the directory was named explicitly, so it must exist.
    :param packaged: start from the packaged defaults (False: *directory* alone).
    :param bind: bind ``s3:NAME`` sources to ``COLDSTART_S3_URI`` (``bind_s3``); the plugin binds itself.
    """
    if directory is not None and required and not directory.is_dir():
        raise ConfigError(f"registry directory not found: {directory} (it should hold models.toml and/or "
                          "optimizations.toml; leave the option unset to use the packaged defaults)")
    raw_opts: dict[str, Any] = {}
    raw_models: dict[str, Any] = {}
    opt_where: dict[str, str] = {}
    model_where: dict[str, str] = {}
    sources = []
    if packaged:
        sources.append((packaged_file("optimizations.toml"), packaged_file("models.toml")))
    if directory is not None:
        sources.append((directory / "optimizations.toml", directory / "models.toml"))
    for opts_file, models_file in sources:
        if opts_file.is_file() or not packaged:
            _overlay(raw_opts, opt_where, opts_file, "optimizations")
        if models_file.is_file() or not packaged:
            _overlay(raw_models, model_where, models_file, "models")
        if packaged and opts_file == packaged_file("optimizations.toml"):
            _overlay_installed(raw_opts, opt_where)  # other packages' optimizations, under the repository's file
    opts = {name: _build(OptimizationSpec, name, raw, opt_where[name]) for name, raw in raw_opts.items()}
    models = {name: _build(ModelSpec, name, raw, model_where[name]) for name, raw in raw_models.items()}
    for name, opt in list(opts.items()):
        if opt.cache not in CACHE_POLICIES:
            raise ConfigError(f"{opt_where[name]} [{opt.name}]: cache = {opt.cache!r}; expected one of {CACHE_POLICIES}")
        opts[name] = OptimizationSpec(opt.name, opt.description, CachePolicy(opt.cache), opt.engine_args, opt.env)
    for model in models.values():
        where = model_where[model.name]
        split_source(model.source)
        if model.compile_cache_uri and not model.compile_cache_uri.startswith("s3:"):
            raise ConfigError(f"{where} [{model.name}].compile_cache_uri = {model.compile_cache_uri!r}: "
                              "expected s3://BUCKET/PREFIX or s3:NAME (under the run's S3 location)")
        for opt_name, src in model.sources:
            split_source(src)
            if opt_name not in opts:
                raise ConfigError(f"{where} [{model.name}].sources names unknown optimization {opt_name!r}")
        for opt_name in model.optimizations:
            if opt_name not in opts:
                raise ConfigError(f"{where} [{model.name}] lists unknown optimization {opt_name!r}; "
                                  f"known: {', '.join(opts)}")
    if not models:
        named = directory / "models.toml" if directory is not None else "the packaged models.toml"
        raise ConfigError(f"{named} defines no [models.*] table")
    registry = Registry(models, opts)
    return bind_s3(registry, s3_location()) if bind else registry


def bind_s3(registry: Registry, location: str | None, *, embedded: str | None = None) -> Registry:
    """Resolve ``s3:NAME`` sources and compile-cache URIs against the run's S3 *location*.

    :param embedded: the embedded endpoint's location, used for generated models' weights when no
        *location* is configured (the CPU lane; ``optimize.s3source.EmbeddedS3``). Other models keep
        their ``s3:NAME`` sources unbound, and the plugin skips those cases with ``S3_ADVICE``.
        An unbound compile-cache URI becomes "" (the local store): an embedded endpoint lives for
        one session, a compile cache is meant to outlive it.
    """
    def bound(ref: str, base: str | None) -> str:
        return f"{base}/{ref[3:].strip('/')}" if base and is_relative_s3(ref) else ref

    models = {}
    for name, model in registry.models.items():
        base = location or (embedded if model.generated else None)
        cache_uri = model.compile_cache_uri
        if is_relative_s3(cache_uri):
            cache_uri = bound(cache_uri, location) if location else ""
        models[name] = replace(model, source=bound(model.source, base),
                               sources=tuple((opt, bound(ref, base)) for opt, ref in model.sources),
                               compile_cache_uri=cache_uri)
    return Registry(models, dict(registry.optimizations))
