"""Entry points: how another installed package adds to this one without editing it.

Two groups (a package declares them in its ``pyproject.toml``; docs/reference/extending.md):

* ``pytest_coldstart.launchers``: ``KIND = "module:LauncherSubclass"``; the launcher is offered as
  ``--coldstart-launcher KIND`` and its ``options`` become ``--coldstart-*`` options;
* ``pytest_coldstart.optimizations``: ``NAME = "module:OPTIMIZATION"``, an ``OptimizationSpec`` named
  NAME; it joins the registry after the packaged optimizations and before a repository's
  ``optimizations.toml`` (which may override it key by key).

The groups are read once per process and only when asked: the launchers' group when pytest registers
options, the optimizations' group when the registry loads.
"""

from __future__ import annotations

import functools
from importlib import metadata

from pytest_coldstart.model.errors import ConfigError

LAUNCHERS_GROUP = "pytest_coldstart.launchers"
OPTIMIZATIONS_GROUP = "pytest_coldstart.optimizations"


@functools.cache
def installed(group: str) -> tuple[metadata.EntryPoint, ...]:
    """The entry points of *group* across installed distributions, by name (the first of a duplicate wins)."""
    found: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=group):
        found.setdefault(entry.name, entry)
    return tuple(found[name] for name in sorted(found))


def origin(entry: metadata.EntryPoint) -> str:
    """Where *entry* comes from, for messages: ``NAME = VALUE (distribution DIST)``."""
    dist = getattr(entry, "dist", None)
    where = f" (distribution {dist.name} {dist.version})" if dist is not None else ""
    return f"{entry.group} entry point {entry.name} = {entry.value}{where}"


def load(entry: metadata.EntryPoint) -> object:
    """Import what *entry* names; a failure says which package to fix or uninstall."""
    try:
        return entry.load()
    except Exception as exc:  # any import-time failure of a third-party package
        raise ConfigError(f"{origin(entry)} could not be loaded: {type(exc).__name__}: {exc} (fix or uninstall "
                          "that package)") from None
