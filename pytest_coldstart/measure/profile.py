"""``--coldstart-profile``: sample every server process with py-spy and attribute the samples to phases.

py-spy attaches to the server's first process right after spawn
(``--subprocesses`` follows EngineCore and the workers as they appear;
``--nonblocking`` does not stop the process to read it) and writes a Chrome
trace: begin/end events per frame with microsecond times, so each sample has a
time and can be given to the phase it fell in. From it we keep a speedscope
file per run (open it at https://www.speedscope.app) and the top functions by
self time per phase (waits left out, ``IDLE_LEAVES``). py-spy's clock starts when it starts, a few tens of ms
after we launch it: that is the alignment error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.process import harness_owns
from pytest_coldstart.model.files import atomic_write_text
from pytest_coldstart.model.paths import under
from pytest_coldstart.model.phase import Phase

RATE_HZ = 250
TOP_N = 8
#: Leaf functions that wait rather than work. py-spy's Chrome trace has no idle flag, and without
#: ``--idle`` a thread that goes idle keeps its last stack open until it runs again, so we record
#: with ``--idle`` (every thread in every sample) and leave the waits out of the rankings.
IDLE_LEAVES = re.compile(r"^(?:\S+\.)?(?:_?wait\w*|poll|_poll|select|sleep|accept|recv\w*|read|readline|readinto|"
                         r"get|join|acquire|_worker|_recv\w*|epoll\w*|run_forever|_run_once|communicate|"
                         # multiprocessing's resource tracker blocks reading its pipe for the whole start
                         r"main \(resource_tracker\.py)(?: \(|:|$)")


def py_spy() -> str | None:
    """The py-spy executable: beside this Python first, then PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass(frozen=True)
class Segment:
    """A stack that was on CPU from start_s to end_s (seconds since spawn) in one thread."""

    pid: int
    tid: int
    start_s: float
    end_s: float
    stack: tuple[str, ...]  # outermost first


def segments(trace: Iterable[dict[str, Any]], offset_s: float) -> list[Segment]:
    """Stacks over time from py-spy's Chrome trace (B/E events per frame, ``ts`` in microseconds)."""
    stacks: dict[tuple[int, int], list[str]] = defaultdict(list)
    last: dict[tuple[int, int], float] = {}
    out: list[Segment] = []
    for ev in sorted((e for e in trace if e.get("ph") in ("B", "E")), key=lambda e: e.get("ts", 0)):
        key = (int(ev.get("pid", 0)), int(ev.get("tid", 0)))
        t = offset_s + float(ev.get("ts", 0)) / 1e6
        stack = stacks[key]
        if stack and key in last and t > last[key]:
            out.append(Segment(key[0], key[1], last[key], t, tuple(stack)))
        last[key] = t
        args = ev.get("args") or {}
        name = str(ev.get("name", "?"))
        if args.get("filename"):
            name = f"{name} ({Path(str(args['filename'])).name}:{args.get('line', 0)})"
        if ev["ph"] == "B":
            stack.append(name)
        elif stack:
            stack.pop()
    return out


def top_by_phase(segs: Sequence[Segment], phases: Sequence[Phase], n: int = TOP_N) -> dict[str, list[dict[str, Any]]]:
    """Per observed phase, the *n* functions with most self time (summed over processes and threads)."""
    result: dict[str, list[dict[str, Any]]] = {}
    for phase in phases:
        if phase.start_s is None or phase.end_s is None:
            continue
        self_s: dict[str, float] = defaultdict(float)
        for seg in segs:
            overlap = min(seg.end_s, phase.end_s) - max(seg.start_s, phase.start_s)
            leaf = seg.stack[-1] if seg.stack else ""
            if overlap > 0 and leaf and not leaf.startswith("process ") and not IDLE_LEAVES.match(leaf):
                self_s[seg.stack[-1]] += overlap
        ranked = sorted(self_s.items(), key=lambda kv: -kv[1])[:n]
        result[phase.name] = [{"function": f, "self_s": round(s, 3)} for f, s in ranked]
    return result


def grown_functions(base: dict[str, list[dict[str, Any]]], head: dict[str, list[dict[str, Any]]], phase: str,
                    n: int = 5) -> list[dict[str, Any]]:
    """Functions of *phase* whose self time grew most from *base* to *head* (for the PR verdict)."""
    before = {r["function"]: r["self_s"] for r in base.get(phase, [])}
    after = {r["function"]: r["self_s"] for r in head.get(phase, [])}
    grown = [(f, after.get(f, 0.0) - before.get(f, 0.0)) for f in set(before) | set(after)]
    return [{"function": f, "grew_s": round(d, 3)} for f, d in sorted(grown, key=lambda x: -x[1])[:n] if d > 0]


def speedscope(segs: Sequence[Segment], name: str) -> dict[str, Any]:
    """An evented speedscope document, one profile per (pid, thread)."""
    frames: dict[str, int] = {}
    profiles = []
    by_thread: dict[tuple[int, int], list[Segment]] = defaultdict(list)
    for seg in segs:
        by_thread[(seg.pid, seg.tid)].append(seg)
    for (pid, tid), items in sorted(by_thread.items()):
        events: list[dict[str, Any]] = []
        open_stack: list[str] = []
        for seg in items:
            common = 0
            while common < min(len(open_stack), len(seg.stack)) and open_stack[common] == seg.stack[common]:
                common += 1
            for frame in reversed(open_stack[common:]):
                events.append({"type": "C", "frame": frames[frame], "at": round(seg.start_s, 6)})
            for frame in seg.stack[common:]:
                events.append({"type": "O", "frame": frames.setdefault(frame, len(frames)), "at": round(seg.start_s, 6)})
            open_stack = list(seg.stack)
            end = seg.end_s
        for frame in reversed(open_stack):
            events.append({"type": "C", "frame": frames[frame], "at": round(end, 6)})
        profiles.append({"type": "evented", "name": f"pid {pid} thread {tid}", "unit": "seconds",
                         "startValue": items[0].start_s, "endValue": end, "events": events})
    return {"$schema": "https://www.speedscope.app/file-format-schema.json", "name": name,
            "shared": {"frames": [{"name": f} for f in frames]}, "profiles": profiles}


class Profiler:
    """One py-spy recording of a server's process group, started after spawn and stopped before stop."""

    def __init__(self, out_dir: Path, name: str, rate_hz: int = RATE_HZ) -> None:
        self.out_dir = out_dir
        self.name = name
        self.rate_hz = rate_hz
        self.trace_path = under(out_dir, f"{name}.chrometrace.json", what="profile name (case id)")
        self.speedscope_path = under(out_dir, f"{name}.speedscope.json", what="profile name (case id)")
        self.offset_s = 0.0
        self.error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, pid: int, since_spawn_s: float) -> None:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not found: pip install py-spy (the [profile] extra)"
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.offset_s = since_spawn_s
        try:
            self._proc = self._spawn(exe, pid)
            harness_owns(self._proc.pid)  # the profiler is the harness's, not a process the server left behind
        except OSError as exc:  # never fail the start for the profiler
            self.error = f"py-spy did not start: {exc}"

    def _spawn(self, exe: str, pid: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [exe, "record", "--subprocesses", "--nonblocking", "--idle", "-r", str(self.rate_hz), "-p", str(pid),
             "-f", "chrometrace", "-o", str(self.trace_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGINT makes py-spy write its file; KILL if it does not within *timeout_s*."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            self.error = f"py-spy did not finish writing within {timeout_s:.0f} s"
        if not self.trace_path.exists() and self.error is None:
            tail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
            self.error = "py-spy wrote no profile: " + " | ".join(tail)
        self._proc = None

    def summarize(self, phases: Sequence[Phase]) -> dict[str, Any]:
        """The result's ``profile`` entry; also writes the speedscope file."""
        if self.error is not None or not self.trace_path.exists():
            return {"error": self.error or "no profile"}
        try:
            trace = json.loads(self.trace_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return {"error": f"unreadable py-spy trace {self.trace_path}: {exc}"}
        events = trace.get("traceEvents", []) if isinstance(trace, dict) else trace
        segs = segments(events, self.offset_s)
        atomic_write_text(self.speedscope_path, json.dumps(speedscope(segs, self.name), separators=(",", ":")))
        self.trace_path.unlink(missing_ok=True)
        return {"speedscope": str(self.speedscope_path), "rate_hz": self.rate_hz,
                "processes": len({s.pid for s in segs}), "sampled_s": round(sum(s.end_s - s.start_s for s in segs), 3),
                "top_by_phase": top_by_phase(segs, phases)}
