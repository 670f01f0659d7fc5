"""The launcher interface: one implementation per server kind."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic

import httpx
from typing_extensions import TypeVar

from pytest_coldstart.launch.options import LauncherOption
from pytest_coldstart.launch.process import ServerProcess
from pytest_coldstart.launch.ttft import TTFTDeadline, TTFTSample, measure_ttft
from pytest_coldstart.logs.timeline import PHASE_RULES, PhaseRule, Timeline, timeline_from_events
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import (
    DeadlineExceeded,
    LaunchError,
    LogWriteError,
    PortInUseError,
    ReadinessTimeout,
    ServerExitedError,
    UnhealthyError,
)

#: Called while a start runs: (phase in progress, seconds since spawn).
ProgressFn = Callable[[str, float], None]

HEALTH_POLL_S = 0.1
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a launcher needs to start one server, as plain values."""

    model_ref: str
    served_name: str
    port: int
    log_path: Path
    timeout_s: float
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    engine_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    python: str = "python"
    #: Launcher-specific plain values (``ray-serve``: ray_address, ray_replicas).
    launcher_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


#: The process type a ``Server`` holds; ``Server`` alone is ``Server[ServerProcess]`` (PEP 696 default), and
#: ``DockerServer`` is ``Server[ContainerProcess]``: covariant, so it is a ``Server`` wherever one is accepted.
ProcessT = TypeVar("ProcessT", bound=ServerProcess, covariant=True, default=ServerProcess)


class Server(Generic[ProcessT]):
    """A started server process plus the HTTP readiness check."""

    #: True when "ready" still has no model replica and the first request starts
    #: it (Ray Serve scale-from-zero): the compile-cache populate must send one.
    starts_on_first_request = False

    def __init__(self, spec: LaunchSpec, process: ProcessT, clock: Clock) -> None:
        self.spec = spec
        self.process = process
        self.clock = clock
        self.ready_s: float | None = None
        self.exit_code: int | None = None
        #: The longest a readiness check trailed the one before it (start of one check to the end of the next):
        #: the most the ready edge can trail the moment the server was up. ``HEALTH_POLL_S`` plus the checks'
        #: own time, which grows on a loaded machine.
        self.poll_span_s = HEALTH_POLL_S

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def timeline(self) -> Timeline:
        """The phases so far, from the markers collected as lines arrived (no line is parsed again)."""
        return timeline_from_events(self.process.marker_events(self.ready_s), ready_s=self.ready_s)

    def phase_in_progress(self) -> str:
        """What the server is doing now, for progress lines."""
        return self.timeline().phase_in_progress

    def check_alive(self) -> None:
        """Raise ``ServerExitedError`` if the process has exited (the server never exits by itself)."""
        code = self.process.poll()
        if code is not None:
            self.exit_code = code
            raise self.failure(ServerExitedError, f"server exited with code {code} before it was ready")
        self.check_log()

    def check_log(self) -> None:
        """Raise ``LogWriteError`` once the server log can no longer be written (a full disk)."""
        error = self.process.log_error
        if error is not None:
            raise self.failure(LogWriteError, f"the server log {self.spec.log_path} could not be written "
                                              f"({error.strerror or error}); the start was stopped rather than "
                                              "measured without its log")

    def poll_until(self, done: Callable[[], bool], *, timeout_s: float, timeout_summary: Callable[[], str],
                   progress: ProgressFn | None = None, describe: Callable[[], str] | None = None,
                   check: Callable[[], None] | None = None, since_s: float | None = None) -> None:
        """The one readiness loop: every ``POLL_S`` check the server, then *done*.

        Fails fast through *check* (default ``check_alive``), and after
        *timeout_s* seconds since *since_s* (default: spawn) with the last
        phase reached and the log tail; reports *describe()* to *progress* every
        ``PROGRESS_EVERY_S`` when it changed, at least every 3x that.
        """
        check = check or self.check_alive
        describe = describe or self.phase_in_progress
        origin_s = 0.0 if since_s is None else since_s
        last_report, last_phase = float("-inf"), None
        previous_s: float | None = None
        while True:
            check()
            started_s = self.clock.monotonic_s()
            finished = done()
            if previous_s is not None:
                self.poll_span_s = max(self.poll_span_s, self.clock.monotonic_s() - previous_s)
            previous_s = started_s
            if finished:
                return
            elapsed = self.process.elapsed_s() - origin_s
            if elapsed > timeout_s:
                raise self.failure(ReadinessTimeout, timeout_summary())
            if progress is not None and elapsed - last_report >= PROGRESS_EVERY_S:
                phase = describe()
                if phase != last_phase or elapsed - last_report >= 3 * PROGRESS_EVERY_S:
                    progress(phase, self.process.elapsed_s())
                    last_phase, last_report = phase, elapsed
            self.clock.sleep(HEALTH_POLL_S)

    def wait_ready(self, progress: ProgressFn | None = None) -> float:
        """Poll ``GET /health`` until 200; seconds since spawn when it answered."""
        last_status: list[int] = []
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5)) as client:

            def healthy() -> bool:
                try:
                    code = client.get(f"{self.base_url}/health").status_code
                except httpx.TransportError:
                    return False
                last_status[:] = [code]
                return code == 200

            try:
                self.poll_until(healthy, timeout_s=self.spec.timeout_s, progress=progress,
                                timeout_summary=lambda: f"server not ready after {self.spec.timeout_s:.0f} s "
                                                        "(--coldstart-timeout)")
            except ReadinessTimeout as exc:
                if last_status and last_status[0] >= 500:  # it ran and answered, but never healthy
                    raise self.failure(UnhealthyError, f"{exc.summary}; /health kept answering "
                                                       f"{last_status[0]}") from None
                raise
        self.ready_s = self.process.elapsed_s()
        return self.ready_s

    def failure_hint(self, cls: type[LaunchError], tail: tuple[str, ...]) -> str | None:
        """A next step for the user, from the failure kind and the log tail."""
        if any("Address already in use" in line for line in tail):
            return f"port {self.spec.port} is taken; pass another --coldstart-port or 0 for a free one"
        if issubclass(cls, LogWriteError):
            return "free space where --coldstart-results points, or point it at a bigger disk"
        if issubclass(cls, ReadinessTimeout):
            return "raise --coldstart-timeout, or look at the phase that stalled in the log"
        return None

    def failure(self, cls: type[LaunchError], summary: str) -> LaunchError:
        """The error for a failed start, carrying its evidence: phase reached, elapsed, log tail, exit code."""
        tail = self.process.tail(50)
        return cls(summary, last_phase=self.timeline().last_phase_reached, elapsed_s=self.process.elapsed_s(),
                   log_tail=tail, log_path=str(self.spec.log_path), exit_code=self.exit_code,
                   hint=self.failure_hint(cls, tail))

    def first_token(self, served_name: str, *, timeout_s: float, progress: ProgressFn | None = None) -> TTFTSample:
        """Time the first streamed completion of the ready server, within *timeout_s* in all.

        Raises ``DeadlineExceeded`` naming how far the response got.
        """
        try:
            return measure_ttft(self.base_url, served_name, self.clock, timeout_s=max(timeout_s, 0.001))
        except TTFTDeadline as exc:
            raise self.failure(DeadlineExceeded, f"deadline passed while waiting for the first response: {exc} "
                                                 "(--coldstart-timeout covers ready + first token + first "
                                                 "response)") from None
        except httpx.HTTPError as exc:  # it said ready, then could not serve: the server's failure
            self.check_alive()
            raise self.failure(UnhealthyError, f"ready, but the first request failed: {type(exc).__name__}: "
                                               f"{exc}") from None

    def provenance(self) -> dict[str, Any] | None:
        """Where the start came from when it is not a live server's (a replay: ``launch/replay.py``); else None."""
        return None

    def stop(self) -> int | None:
        code = self.process.stop()
        self.exit_code = self.exit_code if self.exit_code is not None else code
        return code


class Launcher(ABC):
    """Starts one kind of server. A new launcher is a subclass in its own module plus a line in
    ``launch.registry.LAUNCHERS`` (or, from another package, an entry point in the ``pytest_coldstart.launchers``
    group); it declares its kind, its options and its phase table."""

    kind: ClassVar[str] = ""
    #: The phases its timelines have, in order (read by budgets, reports and figures).
    phase_rules: ClassVar[tuple[PhaseRule, ...]] = PHASE_RULES
    #: Its own settings (pytest options / ini keys), passed as ``LaunchSpec.launcher_options``.
    options: ClassVar[tuple[LauncherOption, ...]] = ()
    #: True for a launcher that replays a recorded start (``replay``): no weights are fetched, no probe
    #: or span receiver applies, and its results are marked replayed.
    replays: ClassVar[bool] = False

    @abstractmethod
    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        """Spawn the server and return at once; the caller waits for readiness."""

    def check_options(self, options: Mapping[str, str]) -> None:
        """Refuse bad launcher options (``ConfigError``) when the session starts, before any server.

        The default checks nothing; a launcher whose options name a config file checks it here
        (``--launcher command``: the servers registry and the entry named).
        """
        return None  # a hook with a default, not an abstract method


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Fail before spawning anything if *port* is already bound."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUseError(f"port {port} on {host} is already in use ({exc.strerror})",
                                 hint="pass another --coldstart-port, or 0 to pick a free one") from None
