"""Talking to the Docker daemon: a client that answered a ping, image names, pull errors a user can act on."""

from __future__ import annotations

from typing import Any

from pytest_coldstart.launch.docker_ground import REGISTRY_ADDR
from pytest_coldstart.model.errors import LaunchError

__all__ = ["describe_pull_error", "docker_client", "split_image"]


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a ``:`` in a registry's host:port is not a tag."""
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repo, tag


def describe_pull_error(image: str, exc: Exception) -> LaunchError:
    """Name what went wrong with a pull (registry down, image missing) and the next step."""
    text = str(exc)
    repo, _ = split_image(image)
    registry = repo.split("/", 1)[0] if "/" in repo and ("." in repo.split("/")[0] or ":" in repo.split("/")[0]) \
        else "docker.io"
    low = text.lower()
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "dial tcp", "connect: ")):
        start = ("start it with `python -m pytest_coldstart.launch.docker_ground up`" if registry == REGISTRY_ADDR
                 else "check the registry address and the network")
        return LaunchError(f"image_pull: registry {registry} is unreachable ({text[-300:]})", last_phase=None,
                           hint=start)
    if any(s in low for s in ("manifest unknown", "not found", "404", "does not exist")):
        return LaunchError(f"image_pull: image {image} is not in registry {registry} ({text[-300:]})",
                           hint="push it there (`python -m pytest_coldstart.launch.docker_ground up` pushes the "
                                "CPU lane's base image), or pass --coldstart-docker-image")
    return LaunchError(f"image_pull: pulling {image} failed: {text[-400:]}")


def docker_client(host: str) -> Any:
    """A client of the daemon at *host* that answered a ping; ``LaunchError`` with the next step if none."""
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise LaunchError(f"the Docker daemon at {host} is not reachable ({str(exc)[-200:]})",
                          hint="start the CPU lane's daemon and registry with `python -m "
                               "pytest_coldstart.launch.docker_ground up` (root; `make bench` does it when "
                               "--launcher names docker), or point --coldstart-docker-host / DOCKER_HOST at a running "
                               "daemon") from None
    return client
