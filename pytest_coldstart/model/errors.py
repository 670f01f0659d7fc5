"""Errors that carry what a user needs to act, without a traceback.

Each class carries the failure kind a start that ended in it is saved with
(``kind``, an ``ExitStatus``): the server's (``server_exited``, ``timeout``,
``unhealthy``) or the harness's (``harness_error``, ``preflight_failed``). A
new error class says its kind where it is declared; ``failure_kind`` reads it.
"""

from __future__ import annotations

from typing import ClassVar

from pytest_coldstart.model.case import ExitStatus


class ColdstartError(Exception):
    """Base class: the message is meant to be shown to a user as is."""

    #: How a start that ended in this error is saved (``RunResult.exit_status``).
    kind: ClassVar[ExitStatus] = ExitStatus.HARNESS_ERROR


class ConfigError(ColdstartError):
    """Bad input: unknown model or optimization, bad budgets file, bad option."""


class SchemaVersionError(ColdstartError):
    """A results file this version cannot read (newer schema, or corrupt)."""


class LaunchError(ColdstartError):
    """The server could not be started or did not become ready.

    :param last_phase: latest startup phase observed before the failure.
    :param elapsed_s: seconds since spawn when the failure was detected.
    :param log_tail: the last lines of the server log.
    :param log_path: where the whole log was saved.

    Its own kind is ``unhealthy``: a launcher's "it ran but could not serve" (a failed first request).
    """

    kind: ClassVar[ExitStatus] = ExitStatus.UNHEALTHY

    def __init__(self, summary: str, *, last_phase: str | None = None, elapsed_s: float | None = None,
                 log_tail: tuple[str, ...] = (), log_path: str | None = None, exit_code: int | None = None,
                 hint: str | None = None) -> None:
        self.summary = summary
        self.last_phase = last_phase
        self.elapsed_s = elapsed_s
        self.log_tail = log_tail
        self.log_path = log_path
        self.exit_code = exit_code
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.summary]
        if self.exit_code is not None:
            lines.append(f"exit code: {self.exit_code}")
        if self.elapsed_s is not None:
            lines.append(f"elapsed: {self.elapsed_s:.1f} s since spawn")
        lines.append(f"last phase reached: {self.last_phase or 'none (no startup marker seen)'}")
        if self.log_path:
            lines.append(f"full log: {self.log_path}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        if self.log_tail:
            lines.append(f"--- last {len(self.log_tail)} log lines ---")
            lines.extend(self.log_tail)
        return "\n".join(lines)


class ServerExitedError(LaunchError):
    """The server process exited before it became ready."""

    kind: ClassVar[ExitStatus] = ExitStatus.SERVER_EXITED


class ReadinessTimeout(LaunchError, TimeoutError):
    """The server did not answer /health in time."""

    kind: ClassVar[ExitStatus] = ExitStatus.TIMEOUT


class PortInUseError(LaunchError):
    """The requested port is already bound by another process."""

    kind: ClassVar[ExitStatus] = ExitStatus.PREFLIGHT_FAILED


class UnhealthyError(ReadinessTimeout):
    """The server ran but ``/health`` kept answering an error status until the deadline."""

    kind: ClassVar[ExitStatus] = ExitStatus.UNHEALTHY


class DeadlineExceeded(ReadinessTimeout):
    """The start's one overall deadline (ready + first token + first response) passed."""


class LogWriteError(LaunchError):
    """The server log could not be written (a full disk): the start is stopped, not measured blind."""

    kind: ClassVar[ExitStatus] = ExitStatus.HARNESS_ERROR


class PreflightError(ColdstartError):
    """A check before any server was started failed (free disk space, a writable results directory)."""

    kind: ClassVar[ExitStatus] = ExitStatus.PREFLIGHT_FAILED


class HarnessError(ColdstartError):
    """The harness itself failed (a result it could not save, a process it could not stop)."""


def failure_kind(exc: BaseException) -> ExitStatus:
    """How a start that raised *exc* ended: an interrupt, the kind its error class carries, or (any other
    exception: a bug, an OSError) the harness's failure."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return ExitStatus.INTERRUPTED
    if isinstance(exc, ColdstartError):
        return exc.kind
    return ExitStatus.HARNESS_ERROR
