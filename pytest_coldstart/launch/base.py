"""The launcher interface: one implementation per server kind."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import PortInUseError, ReadinessTimeout, ServerExitedError
from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.logs.timeline import Timeline, timeline_from_stamped
from pytest_coldstart.launch.ttft import TTFTSample, measure_ttft

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


class Server:
    """A started server process plus the HTTP readiness check."""

    #: True when "ready" still has no model replica and the first request starts
    #: it (Ray Serve scale-from-zero): the compile-cache populate must send one.
    starts_on_first_request = False

    def __init__(self, spec: LaunchSpec, process: OwnedProcess, clock: Clock) -> None:
        self.spec = spec
        self.process = process
        self.clock = clock
        self.ready_s: float | None = None
        self.exit_code: int | None = None

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def timeline(self) -> Timeline:
        return timeline_from_stamped(self.process.lines(), ready_s=self.ready_s)

    def wait_ready(self, progress: ProgressFn | None = None) -> float:
        """Poll ``GET /health`` until 200; seconds since spawn when it answered.

        Fails fast when the process exits, and after ``timeout_s`` with the
        last phase reached and the last 50 log lines.
        """
        last_report = float("-inf")
        last_phase = None
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5)) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    self.exit_code = code
                    raise self._failure(ServerExitedError, f"server exited with code {code} before it was ready")
                try:
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        self.ready_s = self.process.elapsed_s()
                        return self.ready_s
                except httpx.TransportError:
                    pass
                elapsed = self.process.elapsed_s()
                if elapsed > self.spec.timeout_s:
                    raise self._failure(ReadinessTimeout, f"server not ready after {self.spec.timeout_s:.0f} s "
                                        "(--coldstart-timeout)")
                if progress is not None and elapsed - last_report >= PROGRESS_EVERY_S:
                    phase = self.timeline().phase_in_progress
                    if phase != last_phase or elapsed - last_report >= 3 * PROGRESS_EVERY_S:
                        progress(phase, elapsed)
                        last_phase, last_report = phase, elapsed
                self.clock.sleep(HEALTH_POLL_S)

    def _failure(self, cls: type[ServerExitedError] | type[ReadinessTimeout], summary: str) -> Exception:
        tail = self.process.tail(50)
        hint = None
        if any("Address already in use" in line for line in tail):
            hint = f"port {self.spec.port} is taken; pass another --coldstart-port or 0 for a free one"
        elif cls is ReadinessTimeout:
            hint = "raise --coldstart-timeout, or look at the phase that stalled in the log"
        return cls(summary, last_phase=self.timeline().last_phase_reached, elapsed_s=self.process.elapsed_s(),
                   log_tail=tail, log_path=str(self.spec.log_path), exit_code=self.exit_code, hint=hint)

    def first_token(self, served_name: str, *, timeout_s: float, progress: ProgressFn | None = None) -> TTFTSample:
        """Time the first streamed completion of the ready server."""
        return measure_ttft(self.base_url, served_name, self.clock, timeout_s=timeout_s)

    def stop(self) -> int | None:
        code = self.process.stop()
        self.exit_code = self.exit_code if self.exit_code is not None else code
        return code


class Launcher(ABC):
    """Starts one kind of server (``vllm``; ``ray-serve`` comes later)."""

    kind: str = ""

    @abstractmethod
    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        """Spawn the server and return at once; the caller waits for readiness."""


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
