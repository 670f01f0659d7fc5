"""Launchers, one per server kind, behind ``launchers.base.Launcher``."""

from __future__ import annotations

from pytest_coldstart.errors import ConfigError
from pytest_coldstart.launchers.base import Launcher

KNOWN_LAUNCHERS = ("vllm",)


def get_launcher(kind: str) -> Launcher:
    """The launcher for *kind*, imported lazily."""
    if kind == "vllm":
        from pytest_coldstart.launchers.vllm import VllmLauncher

        return VllmLauncher()
    raise ConfigError(f"unknown launcher {kind!r}; known launchers: {', '.join(KNOWN_LAUNCHERS)}")
