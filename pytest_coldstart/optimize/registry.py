"""Which strategy carries out which part of an optimization: one line each, imported lazily.

A new weight source or cache policy is a module with a ``SourceStrategy`` or
``CacheStrategy`` subclass plus a line here (and, for a cache policy, a value
in ``model.case.CachePolicy``).
"""

from __future__ import annotations

import importlib

from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.optimize.base import CacheStrategy, SourceStrategy

#: Source kind (``models.toml`` ``source = "KIND:..."``) -> "module:class".
SOURCES: dict[str, str] = {
    "generated": "pytest_coldstart.optimize.sources:GeneratedSource",
    "local": "pytest_coldstart.optimize.sources:LocalSource",
    "hf": "pytest_coldstart.optimize.sources:HubSource",
    "s3": "pytest_coldstart.optimize.s3source:S3Source",
}

#: Cache policy (``optimizations.toml`` ``cache = ...``) -> "module:class".
CACHES: dict[CachePolicy, str] = {
    CachePolicy.COLD: "pytest_coldstart.optimize.caches:ColdCache",
    CachePolicy.COMPILE: "pytest_coldstart.optimize.caches:CompileCache",
    CachePolicy.WARM: "pytest_coldstart.optimize.caches:WarmCache",
    CachePolicy.IMAGE: "pytest_coldstart.optimize.image_cache:ImageCache",
}


def _load(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def source_strategy(kind: str) -> SourceStrategy:
    try:
        target = SOURCES[kind]
    except KeyError:
        raise ConfigError(f"unknown weight source kind {kind!r}; known: {', '.join(SOURCES)}") from None
    return _load(target)()


def cache_strategy(policy: CachePolicy | str) -> CacheStrategy:
    try:
        target = CACHES[CachePolicy(policy)]
    except (KeyError, ValueError):
        raise ConfigError(f"unknown cache policy {policy!r}; known: {', '.join(p.value for p in CACHES)}") from None
    return _load(target)()


def refusal(launcher: str, policy: CachePolicy | str) -> str | None:
    """Why a start by *launcher* cannot run under cache *policy* (the plugin skips it with this), else None."""
    return cache_strategy(policy).refuses(launcher)
