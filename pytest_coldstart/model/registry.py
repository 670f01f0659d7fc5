"""Models and optimizations, read from ``benchmarks/models.toml`` and
``benchmarks/optimizations.toml`` into frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml

CACHE_POLICIES = tuple(p.value for p in CachePolicy)
SOURCE_KINDS = ("generated", "hf", "local", "s3")


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
    """``"hf:org/name"`` -> ``("hf", "org/name")``; ``s3://b/p`` -> ``("s3", "s3://b/p")``."""
    if source.startswith("s3://"):
        return "s3", source
    kind, sep, rest = source.partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        raise ConfigError(f"bad model source {source!r}: expected one of "
                          "generated:NAME, hf:ORG/NAME, local:PATH, s3://BUCKET/PREFIX")
    return kind, rest


def _build(cls: type, name: str, raw: dict[str, Any], where: str) -> Any:
    allowed = set(cls.__dataclass_fields__) - {"name"}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{where} [{name}]: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
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


def _floor_gbps(raw: Any, where: str) -> tuple[tuple[str, float], ...]:
    example = "e.g. floor_gbps = { local = 1.5, s3 = 6.0 }"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: floor_gbps must be a table of source kind -> GB/s, {example}")
    floors = []
    for kind, value in raw.items():
        if kind not in SOURCE_KINDS:
            raise ConfigError(f"{where}: floor_gbps.{kind}: unknown source kind; expected one of {SOURCE_KINDS}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{where}: floor_gbps.{kind} = {value!r}: expected a number of GB/s > 0, {example}")
        floors.append((kind, float(value)))
    return tuple(sorted(floors))


def load_registry(directory: Path) -> Registry:
    """Read and cross-check ``models.toml`` and ``optimizations.toml`` in *directory*."""
    models_file, opts_file = directory / "models.toml", directory / "optimizations.toml"
    opts = {name: _build(OptimizationSpec, name, raw, str(opts_file))
            for name, raw in load_toml(opts_file, "registry file").get("optimizations", {}).items()}
    models = {name: _build(ModelSpec, name, raw, str(models_file))
              for name, raw in load_toml(models_file, "registry file").get("models", {}).items()}
    for name, opt in list(opts.items()):
        if opt.cache not in CACHE_POLICIES:
            raise ConfigError(f"{opts_file} [{opt.name}]: cache = {opt.cache!r}; expected one of {CACHE_POLICIES}")
        opts[name] = OptimizationSpec(opt.name, opt.description, CachePolicy(opt.cache), opt.engine_args, opt.env)
    for model in models.values():
        split_source(model.source)
        if model.compile_cache_uri and not model.compile_cache_uri.startswith("s3://"):
            raise ConfigError(f"{models_file} [{model.name}].compile_cache_uri = {model.compile_cache_uri!r}: "
                              "expected s3://BUCKET/PREFIX")
        for opt_name, src in model.sources:
            split_source(src)
            if opt_name not in opts:
                raise ConfigError(f"{models_file} [{model.name}].sources names unknown optimization {opt_name!r}")
        for opt_name in model.optimizations:
            if opt_name not in opts:
                raise ConfigError(f"{models_file} [{model.name}] lists unknown optimization {opt_name!r}; "
                                  f"known: {', '.join(opts)}")
    if not models:
        raise ConfigError(f"{models_file} defines no [models.*] table")
    return Registry(models, opts)
