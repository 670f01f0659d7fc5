"""A server process we own: its own session, lines stamped on arrival, and a
stop that leaves nothing behind (TERM to the group, grace, KILL, verify).

Finding every descendant, even one that called ``setsid()`` and whose parent
already exited (a double-forked daemon): the harness makes itself a *child
subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux 3.4+), so such orphans are
re-parented to us instead of init, and every server gets a marker variable
(``COLDSTART_OWNER``) in its environment, which its descendants inherit; the
stop kills whatever carries the marker, whatever its session or parent.

Timing fits GitHub Actions' cancel (SIGINT, SIGTERM 7.5 s later, SIGKILL
2.5 s after that): the default grace is 3 s, and a second interrupt during the
grace (the SIGTERM) escalates to KILL of the whole tree at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import psutil

from pytest_coldstart.logs.timeline import StampedLine
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.redact import Redactor

#: Environment variable carrying a per-server token; every descendant inherits it.
OWNER_ENV = "COLDSTART_OWNER"
#: TERM -> KILL wait. GitHub's cancel sends SIGTERM 7.5 s after SIGINT and kills 2.5 s later: the whole
#: stop (grace + KILL + reap) and the result's atomic write (an fsync on a busy disk can take seconds) must
#: end inside those 7.5 s; 3 s of grace leaves 4.5 s for the rest on a loaded 2-core runner.
DEFAULT_GRACE_S = 3.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process a child subreaper (orphaned descendants re-parent to it); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def marked_processes(token: str) -> list[psutil.Process]:
    """Live processes (of this user) whose environment carries ``COLDSTART_OWNER=token``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(OWNER_ENV) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


class ServerProcess(Protocol):
    """What a launcher's ``Server`` and the runner need of the server they started, whatever it runs in:
    ``OwnedProcess`` (a process group of ours) or ``launch.docker.ContainerProcess`` (a container)."""

    #: Where the server's lines go as they arrive; what a failure message points at.
    log_path: Path
    #: The error that stopped the log writer (a full disk), if any: the start is stopped rather than measured.
    log_error: OSError | None
    #: Monotonic seconds at spawn: every line's ``t_s`` and ``elapsed_s()`` count from here.
    spawn_s: float

    @property
    def pid(self) -> int:
        """The host pid that leads the server (its session; the container's init)."""
        ...

    @property
    def argv(self) -> list[str]:
        """The command line that started it (what the result records as ``server_argv``)."""
        ...

    def start(self) -> None:
        """Spawn and return at once; lines are read and stamped in the background."""
        ...

    def lines(self) -> tuple[StampedLine, ...]:
        """A snapshot of the lines read so far, stamped on arrival."""
        ...

    def tail(self, n: int = 50) -> tuple[str, ...]:
        """The last *n* lines' text (for failure messages)."""
        ...

    def poll(self) -> int | None:
        """The exit code once it exited; None while it runs."""
        ...

    def elapsed_s(self) -> float:
        """Seconds since spawn, on the injected clock."""
        ...

    def descendants(self) -> list[psutil.Process]:
        """What of it still runs on this host (checked after ``stop()``: must be empty)."""
        ...

    def kill_tree(self) -> None:
        """KILL everything of it now, no grace (a second interrupt)."""
        ...

    def stop(self, grace_s: float = ...) -> int | None:
        """TERM, *grace_s*, KILL, reap; returns the exit code."""
        ...


class StampedLog:
    """Lines stamped on arrival, kept in memory under a lock: what a server's reader thread appends
    and the runner reads (``OwnedProcess``, ``launch.docker.ContainerProcess``)."""

    def __init__(self) -> None:
        self._lines: list[StampedLine] = []
        self._lock = threading.Lock()

    def _append(self, line: StampedLine) -> None:
        with self._lock:
            self._lines.append(line)

    def lines(self) -> tuple[StampedLine, ...]:
        """A snapshot of the lines read so far."""
        with self._lock:
            return tuple(self._lines)

    def tail(self, n: int = 50) -> tuple[str, ...]:
        return tuple(line.text for line in self.lines()[-n:])


class OwnedProcess(StampedLog):
    """Start *argv* in a new session and stamp every output line on arrival.

    stdout and stderr share one pipe so their relative order is the order the
    kernel saw the writes; a single reader thread stamps each line with the
    injected monotonic clock, in seconds since spawn, and appends it to
    *log_path* as it arrives (so a crash or hang still leaves the full log).
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, clock: Clock,
                 redactor: Redactor | None = None, cwd: Path | None = None) -> None:
        super().__init__()
        self.argv = list(argv)
        self.owner = uuid.uuid4().hex
        self.env = {**dict(env), OWNER_ENV: self.owner}
        #: The error that stopped the log writer (a full disk), if any; lines are still read and kept.
        self.log_error: OSError | None = None
        self.log_path = log_path
        self.clock = clock
        self.redactor = redactor or Redactor(())
        self.cwd = cwd
        self.spawn_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "process not started"
        return self._proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        become_subreaper()
        self.spawn_s = self.clock.monotonic_s()
        self._proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"coldstart-log-{self._proc.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        log = None
        try:
            log = self.log_path.open("w", encoding="utf-8")
        except OSError as exc:
            self.log_error = exc
        for raw in iter(self._proc.stdout.readline, b""):
            t_s = self.clock.monotonic_s() - self.spawn_s
            text = self.redactor.redact(raw.decode("utf-8", "replace").rstrip("\r\n"))
            self._append(StampedLine(t_s, text))
            if log is None:
                continue  # keep draining the pipe, or the server blocks on a full pipe
            try:
                log.write(text + "\n")
                log.flush()
            except OSError as exc:  # ENOSPC: the start is stopped with this reason (Server.check_alive)
                self.log_error = exc
                with contextlib.suppress(OSError):
                    log.close()
                log = None
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        return None if self._proc is None else self._proc.poll()

    def elapsed_s(self) -> float:
        return self.clock.monotonic_s() - self.spawn_s

    def descendants(self) -> list[psutil.Process]:
        """Every live process of this server: its tree, its session, and whatever carries its marker."""
        if self._proc is None:
            return []
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            leader = psutil.Process(self._proc.pid)
            found.update((p.pid, p) for p in leader.children(recursive=True))
        found.update((p.pid, p) for p in session_members(self._proc.pid))
        found.update((p.pid, p) for p in marked_processes(self.owner))
        found.pop(self._proc.pid, None)
        return list(found.values())

    def kill_tree(self) -> None:
        """SIGKILL the server and every descendant now (no grace)."""
        if self._proc is None:
            return
        _signal_group(self._proc.pid, signal.SIGKILL)
        for proc in self.descendants():
            _kill(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> int | None:
        """TERM the whole session, wait *grace_s*, KILL what is left, and reap.

        vLLM's API server forwards TERM to EngineCore and workers; the group
        signal also reaches them if the parent already died. Anything that
        outlived the group (a child that moved to its own session, a
        double-forked daemon) is found by tree, session id and marker and
        killed. A second interrupt (Ctrl-C again, the SIGTERM of a CI cancel)
        during the grace kills the whole tree at once and goes on. Returns the
        server's exit code.
        """
        if self._proc is None:
            return None
        pid = self._proc.pid
        before: list[psutil.Process] = []
        try:
            before = self.descendants()  # taken while parents live: a setsid() child is still in the tree
            stop_group(self._proc, ((signal.SIGTERM, grace_s),))
        except KeyboardInterrupt:
            self.kill_tree()
            raise
        finally:
            _signal_group(pid, signal.SIGKILL)  # the leader may be gone while its group lives on
            for proc in [*before, *self.descendants()]:
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
