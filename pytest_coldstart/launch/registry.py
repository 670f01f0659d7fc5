"""Launchers by kind: one line each, imported only when asked for.

A new launcher is a module with a ``launch.base.Launcher`` subclass (its kind, options and phase
table) plus a line in ``LAUNCHERS``, or, from another package, an entry point in the
``pytest_coldstart.launchers`` group (``model.entry_points``). Built-in launchers' options are read
from ``launch.options`` so that registering pytest options imports no launcher module.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING

from pytest_coldstart.launch.options import BUILTIN_OPTIONS, FLAG_PREFIX, LauncherOption
from pytest_coldstart.model.entry_points import LAUNCHERS_GROUP, installed, load, origin
from pytest_coldstart.model.errors import ConfigError

if TYPE_CHECKING:
    from pytest_coldstart.launch.base import Launcher
    from pytest_coldstart.logs.timeline import PhaseRule

#: kind -> "module:class".
LAUNCHERS: dict[str, str] = {
    "vllm": "pytest_coldstart.launch.vllm:VllmLauncher",
    "ray-serve": "pytest_coldstart.launch.ray_serve:RayServeLauncher",
    "docker": "pytest_coldstart.launch.docker:DockerLauncher",
    "command": "pytest_coldstart.launch.command:CommandLauncher",
    "transformers-serve": "pytest_coldstart.launch.command:TransformersServeLauncher",
    "replay": "pytest_coldstart.launch.replay:ReplayLauncher",
}
#: The built-in kinds (``known_launchers()`` adds those installed packages bring).
KNOWN_LAUNCHERS: tuple[str, ...] = tuple(LAUNCHERS)


@functools.cache
def _installed_classes() -> dict[str, type[Launcher] | ConfigError]:
    """Launchers other packages add (``pytest_coldstart.launchers`` entry points), each checked on its own: a
    broken one is kept as its error, raised only where that launcher is asked for (other sessions run)."""
    return {entry.name: _check_installed(entry) for entry in installed(LAUNCHERS_GROUP)}


def _check_installed(entry: EntryPoint) -> type[Launcher] | ConfigError:
    from pytest_coldstart.launch.base import Launcher

    if entry.name in LAUNCHERS:
        return ConfigError(f"{origin(entry)}: {entry.name!r} is a built-in launcher; give it another name")
    try:
        cls = load(entry)
    except ConfigError as exc:
        return exc
    if not (isinstance(cls, type) and issubclass(cls, Launcher)):
        return ConfigError(f"{origin(entry)}: expected a subclass of pytest_coldstart.launch.base.Launcher, "
                           f"got {cls!r}")
    if cls.kind != entry.name:
        return ConfigError(f"{origin(entry)}: the class's kind is {cls.kind!r}; it must be the entry point's name")
    for option in cls.options:
        if not option.flag.startswith(FLAG_PREFIX):
            return ConfigError(f"{origin(entry)}: option {option.flag} must start with {FLAG_PREFIX} (a "
                               "launcher's options are registered in every pytest session)")
    return cls


def known_launchers() -> tuple[str, ...]:
    """Every launcher kind: the built-in ones, then those installed packages add."""
    return (*LAUNCHERS, *(e.name for e in installed(LAUNCHERS_GROUP) if e.name not in LAUNCHERS))


def launcher_class(kind: str) -> type[Launcher]:
    """The class for *kind*, imported lazily."""
    target = LAUNCHERS.get(kind)
    if target is None:
        found = _installed_classes().get(kind) if installed(LAUNCHERS_GROUP) else None
        if isinstance(found, ConfigError):
            raise found
        if found is not None:
            return found
        raise ConfigError(f"unknown launcher {kind!r}; known launchers: {', '.join(known_launchers())}")
    module, _, name = target.partition(":")
    cls: type[Launcher] = getattr(importlib.import_module(module), name)
    return cls


def get_launcher(kind: str) -> Launcher:
    return launcher_class(kind)()


def phase_rules(kind: str) -> tuple[PhaseRule, ...]:
    return launcher_class(kind).phase_rules


def all_phase_names() -> tuple[str, ...]:
    """Every phase any launcher can report, in order of first appearance (budgets accept these); a broken
    installed launcher adds none."""
    names: dict[str, None] = {}
    for kind in known_launchers():
        try:
            rules = phase_rules(kind)
        except ConfigError:
            continue
        names.update(dict.fromkeys(rule.name for rule in rules))
    return tuple(names)


def options_of(kind: str) -> tuple[LauncherOption, ...]:
    """*kind*'s own options; a built-in launcher's without importing its module."""
    if kind in BUILTIN_OPTIONS and LAUNCHERS.get(kind) is not None:
        return BUILTIN_OPTIONS[kind]
    return launcher_class(kind).options


def all_options() -> tuple[LauncherOption, ...]:
    """Every launcher's own options (the plugin registers them), each flag once; a broken installed launcher
    adds none (its error comes where it is asked for)."""
    found: dict[str, LauncherOption] = {}
    for kind in known_launchers():
        try:
            options = options_of(kind)
        except ConfigError:
            continue
        for option in options:
            found.setdefault(option.flag, option)
    return tuple(found.values())
