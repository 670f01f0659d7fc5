"""One container behind the interface the runner expects of a server process (``OwnedProcess``):
pull, create and start on a thread, the log stream stamped on arrival, ``poll``, ``stop``, and what of it
still runs on the host."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import psutil

from pytest_coldstart.launch.docker.client import describe_pull_error, split_image
from pytest_coldstart.launch.process import StampedLog
from pytest_coldstart.logs.timeline import StampedLine
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import LaunchError
from pytest_coldstart.model.redact import Redactor, argv_secrets

__all__ = ["LABEL", "OOM_EXIT", "STATE_POLL_S", "STOP_GRACE_S", "ContainerProcess"]

STATE_POLL_S = 0.5
STOP_GRACE_S = 15
OOM_EXIT = 137
LABEL = "pytest-coldstart"


class ContainerProcess(StampedLog):
    """A container behind the interface the runner expects of ``OwnedProcess``:
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
        # The server's own secrets too: a key in the container's command (``--api-key X``).
        self.redactor = redactor.with_secrets(argv_secrets(command or []))
        self.run_options = dict(run_options)
        #: The image is already local (image_cached): no pull, so ``image_pull`` is not observed.
        self.image_warm = image_warm
        self.spawn_s = 0.0
        #: The error that stopped the log writer (a full disk), if any; lines are still read and kept, and
        #: ``DockerServer.check_alive`` stops the start with it (as ``OwnedProcess`` does).
        self.log_error: OSError | None = None
        self.events: dict[str, float] = {}
        self.reported: dict[str, object] = {}
        self.setup_error: LaunchError | None = None
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
