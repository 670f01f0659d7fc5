"""A recorded start as a schedule: which lines a replay re-emits, when, and when it is up.

Pure text and numbers (no clock, no I/O): the replay server (``launch/replay_server.py``)
and the ``replay`` launcher (``launch/replay.py``) both build the same plan from
the same log text, so the harness knows what the server emits without asking it.

Times are the log's own, in seconds from its earliest stamp, exactly as the
offline timeline reads them (``coldstart timeline`` for a ``vllm serve`` log,
``coldstart ray-timeline`` for a Ray Serve LLM log): vLLM's stamps have 1 s
resolution, Ray Serve's controller lines 1 ms. The server is *up* (``/health``
answers) when the last phase the offline timeline observes has ended: for a
``vllm serve`` log, uvicorn's "Application startup complete." (or a logged
``GET /health`` 200, when the log has one); for a Ray Serve LLM console capture,
the last replica milestone ("Started vLLM engine.", "Supported tasks", or the
controller's "started successfully"). A log that never says it serves (a failed
start, an offline ``LLM()`` run) is replayed whole, and then the server exits:
the harness sees a start that failed in the phase the log reached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pytest_coldstart.logs.grammar import match_markers, offline_times, parse_line
from pytest_coldstart.logs.ray import looks_like_ray_log, parse_ray_line, ray_timeline_from_log, serve_timestamp
from pytest_coldstart.logs.timeline import StampedLine, Timeline, timeline_from_log

KIND_VLLM = "vllm"
KIND_RAY = "ray"
REPLAY_KINDS = (KIND_VLLM, KIND_RAY)


class ReplayLogError(ValueError):
    """The log cannot be replayed (no stamped startup line); the message says what to pass instead."""


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay emits.

    :param lines: the lines to emit, in stamp order; ``t_s`` is the line's own stamp (seconds from the log's
        earliest stamp; a line without a stamp takes the one before it, lines before the first stamp 0).
    :param schedule_s: when each line is emitted, in log seconds (its stamp: lines go out in stamp order).
    :param up_s: when ``/health`` starts answering, in log seconds; None for a start that never served (a
        crash, an offline ``LLM()`` run): the replay emits every line, then exits as the server did.
    :param up_phase: the last phase the offline timeline observes (the one whose end says it is up).
    """

    kind: str
    lines: tuple[StampedLine, ...]
    schedule_s: tuple[float, ...]
    up_s: float | None
    up_phase: str
    offline: Timeline
    sha256: str


def offline_timeline(text: str, kind: str) -> Timeline:
    """The offline timeline of *text* under *kind*'s rules (what ``coldstart timeline``/``ray-timeline`` print)."""
    return ray_timeline_from_log(text) if kind == KIND_RAY else timeline_from_log(text)


def log_kind(text: str) -> str:
    return KIND_RAY if looks_like_ray_log(text) else KIND_VLLM


def _times(text: str, kind: str) -> list[float | None]:
    raws = text.split("\n")
    if kind == KIND_RAY:
        records = [parse_ray_line(raw)[0] for raw in raws]
        stamps = offline_times(records, lambda r: serve_timestamp(r.message))
    else:
        stamps = offline_times([parse_line(raw) for raw in raws])
    known = [ts.timestamp() for ts in stamps if ts is not None]
    if not known:
        return []
    base = min(known)
    return [None if ts is None else ts.timestamp() - base for ts in stamps]


def plan_replay(text: str, kind: str | None = None) -> ReplayPlan:
    """The replay of *text*: its lines up to the moment it is up, on the log's own clock."""
    kind = kind or log_kind(text)
    if kind not in REPLAY_KINDS:
        raise ReplayLogError(f"unknown replay kind {kind!r}; known: {', '.join(REPLAY_KINDS)}")
    text = text.replace("\r\n", "\n").rstrip("\n")
    raws = text.split("\n")
    times = _times(text, kind)
    if not times:
        raise ReplayLogError("the log has no timestamped vLLM or Ray Serve line to replay; give a saved `vllm serve` "
                             "log or a Ray Serve LLM console capture")
    offline = offline_timeline(text, kind)
    observed = [p for p in offline.phases if p.observed and p.end_s is not None]
    if not observed:
        raise ReplayLogError("the log reaches no startup phase the offline timeline can see (`coldstart timeline` "
                             "observes none), so there is no moment at which it is up")
    last = max(observed, key=lambda p: p.end_s or 0.0)
    stamped = [0.0 if t is None else t for t in times]
    serving = _serving(raws, stamped, kind, {p.name for p in observed})
    # A start that never served (a crash, an offline `LLM()` run): every line, then the server exits.
    up_s = None if serving is None else max(float(last.end_s or 0.0), serving)
    until = max(stamped) if up_s is None else up_s
    # Every line stamped no later than "up", in the order of its stamp (a stable sort: lines of one second keep
    # their file order, a line without a stamp stays after the line whose stamp it took). A Ray console capture
    # repeats worker lines nested under the replica's prefix up to minutes after their stamp; the offline
    # reading goes by the stamps, and so does the replay.
    order = sorted((i for i, t in enumerate(stamped) if t <= until + 1e-9), key=lambda i: stamped[i])
    lines = tuple(StampedLine(round(stamped[i], 6), raws[i].rstrip("\r")) for i in order)
    return ReplayPlan(kind, lines, tuple(line.t_s for line in lines), None if up_s is None else round(up_s, 6),
                      last.name, offline, hashlib.sha256(text.encode("utf-8", "replace")).hexdigest())


#: Phases whose end means the recorded server answered requests.
_SERVING_PHASES = {KIND_VLLM: ("api_server", "ready"), KIND_RAY: ("engine_start", "replica_ready")}


def _serving(raws: list[str], stamped: list[float], kind: str, observed: set[str]) -> float | None:
    """When the log first says the server serves (0.0 when only a serving phase's end says so), or None."""
    if any(name in observed for name in _SERVING_PHASES[kind]):
        return 0.0
    if kind == KIND_VLLM:  # "Starting vLLM server on ..." with uvicorn's own lines filtered out of the capture
        for raw, t in zip(raws, stamped, strict=True):
            if any(name == "api_start" for name, _ in match_markers(parse_line(raw))):
                return t
    return None
