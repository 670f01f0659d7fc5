"""Launchers, one per server kind, behind ``launchers.base.Launcher``."""

from __future__ import annotations

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.launch.base import Launcher

KNOWN_LAUNCHERS = ("vllm", "ray-serve")


def get_launcher(kind: str) -> Launcher:
    """The launcher for *kind*, imported lazily."""
    if kind == "vllm":
        from pytest_coldstart.launch.vllm import VllmLauncher

        return VllmLauncher()
    if kind == "ray-serve":
        from pytest_coldstart.launch.ray_serve import RayServeLauncher

        return RayServeLauncher()
    raise ConfigError(f"unknown launcher {kind!r}; known launchers: {', '.join(KNOWN_LAUNCHERS)}")
