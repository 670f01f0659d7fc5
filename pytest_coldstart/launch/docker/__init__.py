"""The Docker launcher (``--launcher docker``) as a small package: ``client`` (the daemon, image names, pull
errors), ``container`` (one container behind the server-process interface), ``launcher`` (options, phases,
the server). Every name of the former ``launch/docker.py`` is importable from here, and the registry's
``pytest_coldstart.launch.docker:DockerLauncher`` line stands."""

from __future__ import annotations

from pytest_coldstart.launch.docker.client import describe_pull_error, docker_client, split_image
from pytest_coldstart.launch.docker.container import LABEL, OOM_EXIT, STATE_POLL_S, STOP_GRACE_S, ContainerProcess
from pytest_coldstart.launch.docker.launcher import (
    CONTAINER_PHASES,
    DEFAULT_SHM,
    DOCKER_PHASE_RULES,
    IMAGE_CACHE_KEY,
    IMAGE_WARM,
    PASS_ENV_PREFIXES,
    DockerLauncher,
    DockerServer,
    container_env,
    host_mounts,
)

__all__ = ["CONTAINER_PHASES", "DEFAULT_SHM", "DOCKER_PHASE_RULES", "IMAGE_CACHE_KEY", "IMAGE_WARM", "LABEL",
           "OOM_EXIT", "PASS_ENV_PREFIXES", "STATE_POLL_S", "STOP_GRACE_S", "ContainerProcess", "DockerLauncher",
           "DockerServer", "container_env", "describe_pull_error", "docker_client", "host_mounts", "split_image"]
