"""A server process we own: its own session, lines stamped on arrival, and a
stop that leaves nothing behind (TERM to the group, grace, KILL, verify)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from pytest_coldstart.logs.timeline import StampedLine
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.redact import Redactor


class OwnedProcess:
    """Start *argv* in a new session and stamp every output line on arrival.

    stdout and stderr share one pipe so their relative order is the order the
    kernel saw the writes; a single reader thread stamps each line with the
    injected monotonic clock, in seconds since spawn, and appends it to
    *log_path* as it arrives (so a crash or hang still leaves the full log).
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, clock: Clock,
                 redactor: Redactor | None = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.clock = clock
        self.redactor = redactor or Redactor(())
        self.cwd = cwd
        self.spawn_s = 0.0
        self._lines: list[StampedLine] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "process not started"
        return self._proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.spawn_s = self.clock.monotonic_s()
        self._proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"coldstart-log-{self._proc.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            for raw in iter(self._proc.stdout.readline, b""):
                t_s = self.clock.monotonic_s() - self.spawn_s
                text = self.redactor.redact(raw.decode("utf-8", "replace").rstrip("\r\n"))
                with self._lock:
                    self._lines.append(StampedLine(t_s, text))
                log.write(text + "\n")
                log.flush()

    def lines(self) -> tuple[StampedLine, ...]:
        """A snapshot of the lines read so far."""
        with self._lock:
            return tuple(self._lines)

    def tail(self, n: int = 50) -> tuple[str, ...]:
        return tuple(line.text for line in self.lines()[-n:])

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        return None if self._proc is None else self._proc.poll()

    def elapsed_s(self) -> float:
        return self.clock.monotonic_s() - self.spawn_s

    def stop(self, grace_s: float = 15.0) -> int | None:
        """TERM the whole session, wait *grace_s*, KILL what is left, and reap.

        vLLM's API server forwards TERM to EngineCore and workers; the group
        signal also reaches them if the parent already died. Anything that
        outlived the group (a child that moved to its own group) is found by
        session id and killed. Returns the server's exit code.
        """
        if self._proc is None:
            return None
        pid = self._proc.pid
        stop_group(self._proc, ((signal.SIGTERM, grace_s),))
        _signal_group(pid, signal.SIGKILL)  # the leader may be gone while its group lives on
        for proc in session_members(pid):
            _kill(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):  # only a D-state process outlives KILL
            self._proc.wait(timeout=grace_s)
        if self._reader is not None:
            self._reader.join(timeout=grace_s)
        return self._proc.returncode


def session_members(session_id: int) -> list[psutil.Process]:
    """Live processes whose session id is *session_id* (ours all start one)."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == session_id and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def stop_group(proc: subprocess.Popen[Any], steps: Sequence[tuple[signal.Signals, float]]) -> int | None:
    """Signal *proc*'s process group with each (signal, seconds to wait) in turn until it exits.

    *proc* must lead its own group (``start_new_session=True``). Returns its
    exit code, or None if it outlived every step.
    """
    for sig, wait_s in steps:
        if proc.poll() is not None:
            break
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill(proc: psutil.Process) -> None:
    try:
        proc.kill()
        proc.wait(timeout=5)
    except psutil.Error:
        pass
