"""A server process we own: its own session, lines stamped on arrival, and a
stop that leaves nothing behind (TERM to the group, grace, KILL, verify).

Finding every descendant, even one that called ``setsid()`` and whose parent
already exited (a double-forked daemon): the harness makes itself a *child
subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux 3.4+), so such orphans are
re-parented to us instead of init, and every server gets a marker variable
(``COLDSTART_OWNER``) in its environment, which its descendants inherit; the
stop kills whatever carries the marker, whatever its session or parent.

A daemon that also leaves the environment behind (double fork, ``setsid()``,
re-exec with an empty environment) carries no marker: being orphaned, it is
re-parented to the harness. So a start also owns whatever became a child of the
harness while it ran and is not the harness's own (``OwnedProcess.adopted``):
the harness's children are noted when the server is spawned, and at the stop
every newcomer that is not another live server's (by its marker) nor a process
the harness started itself (``harness_owns``) is stopped with it.

Log lines are read in bounded memory and time: each is parsed once on arrival
(``logs.timeline.LiveEvents``), a line is split at ``MAX_LINE_BYTES``, and only
the first ``KEEP_BYTES`` of text, every line carrying a startup marker and the
last ``TAIL_LINES`` lines stay in memory (the whole log is on disk).

Timing fits GitHub Actions' cancel (SIGINT, SIGTERM 7.5 s later, SIGKILL
2.5 s after that): the default grace is 3 s, and a second interrupt during the
grace (the SIGTERM) escalates to KILL of the whole tree at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import os
import signal
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import psutil

from pytest_coldstart.logs.grammar import parse_line
from pytest_coldstart.logs.timeline import LiveEvents, StampedLine
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.redact import Redactor, argv_secrets

#: Environment variable carrying a per-server token; every descendant inherits it.
OWNER_ENV = "COLDSTART_OWNER"
#: TERM -> KILL wait. GitHub's cancel sends SIGTERM 7.5 s after SIGINT and kills 2.5 s later: the whole
#: stop (grace + KILL + reap) and the result's atomic write (an fsync on a busy disk can take seconds) must
#: end inside those 7.5 s; 3 s of grace leaves 4.5 s for the rest on a loaded 2-core runner.
DEFAULT_GRACE_S = 3.0
PR_SET_CHILD_SUBREAPER = 36
#: Text of a log kept in memory in full; past it only marker lines and the tail are (the log file has it all).
#: A vLLM start logs well under 1 MiB, a Ray Serve start a few MiB.
KEEP_BYTES = 32 * 2**20
#: Lines kept for an error's tail (``tail``), whatever the log's size.
TAIL_LINES = 500
#: A line longer than this is read in pieces (a server writing without a newline cannot grow a line unbounded).
MAX_LINE_BYTES = 64 * 2**10

#: Owner tokens of the servers started and not yet stopped: a process carrying one is that server's.
_LIVE_OWNERS: set[str] = set()
#: Pids of processes the harness started itself outside ``OwnedProcess`` (py-spy): never adopted by a start.
_HARNESS_OWN: set[int] = set()


def become_subreaper() -> bool:
    """Make this process a child subreaper (orphaned descendants re-parent to it); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def harness_owns(pid: int) -> None:
    """Declare *pid* a child the harness started itself (a profiler): a start running now must not stop it."""
    _HARNESS_OWN.add(pid)


def harness_children() -> dict[int, psutil.Process]:
    """This process's live children (orphans re-parented to it, a subreaper, included)."""
    try:
        return {p.pid: p for p in psutil.Process(os.getpid()).children()}
    except psutil.Error:
        return {}


def describe_process(proc: psutil.Process) -> str:
    """``pid (command line)`` for an error message; the command line is redacted by the caller."""
    try:
        cmdline = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        cmdline = "?"
    return f"{proc.pid} ({cmdline[:200]})"


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
    #: The harness's secrets plus the server's own (its argv and env): what results and logs are masked with.
    redactor: Redactor

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

    def marker_events(self, until_s: float | None = None) -> dict[str, list[tuple[float, dict[str, str]]]]:
        """The startup markers of the lines read so far, each line matched once on arrival."""
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
    """Lines stamped on arrival, under a lock: what a server's reader thread appends and the runner
    reads (``OwnedProcess``, ``launch.docker.ContainerProcess``).

    Bounded: each line is parsed once here (its markers go to ``events``); the
    first ``KEEP_BYTES`` of text are kept, then only lines with a marker, plus
    the last ``TAIL_LINES`` lines whatever the size. ``dropped_lines`` counts
    the lines only the log file has.
    """

    def __init__(self) -> None:
        self._kept: list[tuple[int, StampedLine]] = []
        self._tail: deque[tuple[int, StampedLine]] = deque(maxlen=TAIL_LINES)
        self._seq = itertools.count()
        self._kept_bytes = 0
        self.dropped_lines = 0
        self._events = LiveEvents()
        self._lock = threading.Lock()

    def _append(self, line: StampedLine) -> None:
        record = line.record if line.record is not None else parse_line(line.text)  # outside the lock
        stamped = StampedLine(line.t_s, line.text, record)
        with self._lock:
            entry = (next(self._seq), stamped)
            marked = self._events.add(stamped.t_s, record)
            self._tail.append(entry)
            if marked or self._kept_bytes < KEEP_BYTES:
                self._kept.append(entry)
                self._kept_bytes += len(stamped.text)
            else:
                self.dropped_lines += 1

    def lines(self) -> tuple[StampedLine, ...]:
        """A snapshot of the lines kept so far, in arrival order (all of them below ``KEEP_BYTES``)."""
        with self._lock:
            if not self.dropped_lines:
                return tuple(line for _, line in self._kept)
            merged = dict(self._kept)
            merged.update(self._tail)
        return tuple(merged[seq] for seq in sorted(merged))

    def marker_events(self, until_s: float | None = None) -> dict[str, list[tuple[float, dict[str, str]]]]:
        """The marker events seen so far, at or before *until_s* (``logs.timeline.timeline_from_events``)."""
        with self._lock:
            return self._events.until(until_s)

    def tail(self, n: int = 50) -> tuple[str, ...]:
        with self._lock:
            entries = list(self._tail)[-n:] if n > 0 else []
        return tuple(line.text for _, line in entries)


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
        # The server's own secrets too: a key on its command line (``--api-key X``) is masked in its log.
        self.redactor = (redactor or Redactor(())).with_secrets(argv_secrets(self.argv))
        self.cwd = cwd
        self.spawn_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        #: The harness's children when this server was spawned: any other child found later was adopted.
        self._children_before: frozenset[int] = frozenset()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "process not started"
        return self._proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        become_subreaper()
        self._children_before = frozenset(harness_children())
        _LIVE_OWNERS.add(self.owner)
        self.spawn_s = self.clock.monotonic_s()
        try:
            self._proc = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except BaseException:
            _LIVE_OWNERS.discard(self.owner)
            raise
        self._reader = threading.Thread(target=self._read, name=f"coldstart-log-{self._proc.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        log = None
        try:
            log = self.log_path.open("w", encoding="utf-8")
        except OSError as exc:
            self.log_error = exc
        stdout = self._proc.stdout
        for raw in iter(lambda: stdout.readline(MAX_LINE_BYTES), b""):
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

    def adopted(self) -> list[psutil.Process]:
        """Children of the harness that appeared since this server was spawned and are not the harness's own,
        with their trees: orphans of this server re-parented to the harness (a subreaper), even one that
        left its session and its environment (a double-forked daemon that re-exec'ed with ``env -i``).

        Not adopted: another live server's processes (they carry its marker), a process the harness
        declared its own (``harness_owns``), children that run the harness's own environment marker.
        """
        if self._proc is None:
            return []
        own_marker = os.environ.get(OWNER_ENV)
        found: dict[int, psutil.Process] = {}
        for pid, proc in harness_children().items():
            if pid in self._children_before or pid == self._proc.pid or pid in _HARNESS_OWN:
                continue
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                token = proc.environ().get(OWNER_ENV)
            except (psutil.Error, OSError):
                continue
            if token is not None and token != self.owner and (token in _LIVE_OWNERS or token == own_marker):
                continue
            found[pid] = proc
            with contextlib.suppress(psutil.Error):
                found.update((p.pid, p) for p in proc.children(recursive=True))
        return list(found.values())

    def descendants(self) -> list[psutil.Process]:
        """Every live process of this server: its tree, its session, whatever carries its marker, and
        whatever it left re-parented to the harness (``adopted``)."""
        if self._proc is None:
            return []
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            leader = psutil.Process(self._proc.pid)
            found.update((p.pid, p) for p in leader.children(recursive=True))
        found.update((p.pid, p) for p in session_members(self._proc.pid))
        found.update((p.pid, p) for p in marked_processes(self.owner))
        found.update((p.pid, p) for p in self.adopted())
        found.pop(self._proc.pid, None)
        return list(found.values())

    def survivors(self) -> list[str]:
        """After ``stop``: ``pid (command line)`` of each process of this server still running (redacted)."""
        return [self.redactor.redact(describe_process(p)) for p in self.descendants()]

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
            _LIVE_OWNERS.discard(self.owner)
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
