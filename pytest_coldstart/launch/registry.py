"""Launchers by kind: one line each, imported only when asked for.

A new launcher is a module with a ``launch.base.Launcher`` subclass (its
kind, options and phase table) plus a line in ``LAUNCHERS``.
"""

from __future__ import annotations

import importlib

from pytest_coldstart.launch.base import Launcher, LauncherOption
from pytest_coldstart.logs.timeline import PhaseRule
from pytest_coldstart.model.errors import ConfigError

#: kind -> "module:class".
LAUNCHERS: dict[str, str] = {
    "vllm": "pytest_coldstart.launch.vllm:VllmLauncher",
    "ray-serve": "pytest_coldstart.launch.ray_serve:RayServeLauncher",
    "docker": "pytest_coldstart.launch.docker:DockerLauncher",
    "command": "pytest_coldstart.launch.command:CommandLauncher",
    "transformers-serve": "pytest_coldstart.launch.command:TransformersServeLauncher",
    "replay": "pytest_coldstart.launch.replay:ReplayLauncher",
}
KNOWN_LAUNCHERS: tuple[str, ...] = tuple(LAUNCHERS)


def launcher_class(kind: str) -> type[Launcher]:
    """The class for *kind*, imported lazily."""
    try:
        target = LAUNCHERS[kind]
    except KeyError:
        raise ConfigError(f"unknown launcher {kind!r}; known launchers: {', '.join(KNOWN_LAUNCHERS)}") from None
    module, _, name = target.partition(":")
    cls: type[Launcher] = getattr(importlib.import_module(module), name)
    return cls


def get_launcher(kind: str) -> Launcher:
    return launcher_class(kind)()


def phase_rules(kind: str) -> tuple[PhaseRule, ...]:
    return launcher_class(kind).phase_rules


def all_phase_names() -> tuple[str, ...]:
    """Every phase any launcher can report, in order of first appearance (budgets accept these)."""
    return tuple(dict.fromkeys(rule.name for kind in KNOWN_LAUNCHERS for rule in phase_rules(kind)))


def all_options() -> tuple[LauncherOption, ...]:
    """Every launcher's own options (the plugin registers them)."""
    return tuple(option for kind in KNOWN_LAUNCHERS for option in launcher_class(kind).options)
