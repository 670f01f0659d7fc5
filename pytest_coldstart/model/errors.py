"""Errors that carry what a user needs to act, without a traceback."""

from __future__ import annotations


class ColdstartError(Exception):
    """Base class: the message is meant to be shown to a user as is."""


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
    """

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


class ReadinessTimeout(LaunchError, TimeoutError):
    """The server did not answer /health in time."""


class PortInUseError(LaunchError):
    """The requested port is already bound by another process."""


class UnhealthyError(ReadinessTimeout):
    """The server ran but ``/health`` kept answering an error status until the deadline."""


class DeadlineExceeded(ReadinessTimeout):
    """The start's one overall deadline (ready + first token + first response) passed."""


class LogWriteError(LaunchError):
    """The server log could not be written (a full disk): the start is stopped, not measured blind."""


class PreflightError(ColdstartError):
    """A check before any server was started failed (free disk space, a writable results directory)."""


class HarnessError(ColdstartError):
    """The harness itself failed (a result it could not save, a process it could not stop)."""
