"""``--coldstart-launcher replay``: a recorded GPU start, replayed through the live path.

The child (``launch/replay_server.py``, own process group like every server here)
re-emits a real log's lines at their recorded pace divided by
``--coldstart-replay-speed``, answers ``/health`` from the moment the log says
the server was up, and serves ``/v1/completions``. The harness stamps the lines
on arrival as for any server; this launcher maps the stamps back onto the log's
clock (arrival since the first line x speed), so phases and budgets read in
recorded seconds: an 8xH100 start's phases from a 15 s replay.

A ``vllm serve`` log gets vLLM's phase rules, a Ray Serve LLM console capture
Ray's (``logs/ray.py``), chosen from the log's text. TTFT and the warm-up
requests are the replay server's own (it has no model): the result says so
(``RunResult.replay``), and the history leaves replayed results out unless
``--coldstart-replay-record`` is on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.base import HEALTH_POLL_S, Launcher, LaunchSpec, Server
from pytest_coldstart.launch.options import REPLAY_OPTIONS, parse_log, parse_speed
from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.logs.ray import RAY_PHASE_RULES, ray_events, ray_reported, stamp_live
from pytest_coldstart.logs.replay import KIND_RAY, ReplayLogError, ReplayPlan, plan_replay
from pytest_coldstart.logs.timeline import (
    PHASE_RULES,
    SOURCE_ARRIVAL,
    StampedLine,
    Timeline,
    build_timeline,
    timeline_from_stamped,
)
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.redact import Redactor

DEFAULT_SPEED = 1.0


def records_replays(options: Mapping[str, str] | Iterable[tuple[str, str]]) -> bool:
    """True when replayed results go into the asv history too (``--coldstart-replay-record on``)."""
    return str(dict(options).get("replay_record", "off")) == "on"


class ReplayServer(Server):
    """The replay child: its arrival stamps read back on the recorded log's clock."""

    def __init__(self, spec: LaunchSpec, process: OwnedProcess, clock: Clock, plan: ReplayPlan, speed: float,
                 log: Path) -> None:
        super().__init__(spec, process, clock)
        self.plan = plan
        self.speed = speed
        self.log = log

    def recorded_s(self, t_s: float, origin: float) -> float:
        """An arrival stamp (seconds since spawn) on the log's clock."""
        return (t_s - origin) * self.speed + self.plan.schedule_s[0]

    def recorded_lines(self) -> tuple[tuple[StampedLine, ...], float | None]:
        """The lines so far and the ready moment, on the log's clock: the first line's arrival is its stamp."""
        lines = self.process.lines()
        if not lines:
            return (), None
        origin = lines[0].t_s
        ready = None if self.ready_s is None else self.recorded_s(self.ready_s, origin)
        return tuple(replace(line, t_s=round(self.recorded_s(line.t_s, origin), 6)) for line in lines), ready

    def timeline(self) -> Timeline:
        lines, ready = self.recorded_lines()
        if self.plan.kind == KIND_RAY:
            return ray_replay_timeline(lines, ready)
        return timeline_from_stamped(lines, ready_s=ready)

    def resolution(self) -> dict[str, float | None]:
        """How closely the live stamps follow the log, in recorded seconds.

        ``line_lag_s``: the most any line arrived off its stamp (the child's
        scheduling and the pipe's delays, x speed); ``ready_s``: the longest span of
        two consecutive /health checks x speed (the poll interval plus the checks' own
        time, as measured), the most the ``ready`` edge trails "up".
        """
        lines, _ = self.recorded_lines()
        lag = [abs(line.t_s - planned.t_s) for line, planned in zip(lines, self.plan.lines, strict=False)]
        return {"line_lag_s": round(max(lag), 6) if lag else None,
                "ready_s": round(max(HEALTH_POLL_S, self.poll_span_s) * self.speed, 6)}

    def provenance(self) -> dict[str, Any] | None:
        res = self.resolution()
        return {"log": str(self.log), "log_sha256": self.plan.sha256, "speed": self.speed, "rules": self.plan.kind,
                "up_s": self.plan.up_s, "up_phase": self.plan.up_phase, "lines": len(self.plan.lines),
                "resolution_s": res,
                "note": "phases on the recorded log's clock; TTFT and warm-up are the replay server's own"}


def ray_replay_timeline(lines: tuple[StampedLine, ...] | list[StampedLine], ready_s: float | None) -> Timeline:
    """Ray phase rules on a replayed console capture, with the offline reading's origin (its first line).

    As ``ray_timeline_from_log`` without a request stamp: no spawn edge (the capture
    starts before the request), the first-token edge is when ``/health`` answered.
    """
    stamped = stamp_live(lines, None)
    events = ray_events(stamped)
    timeline = build_timeline([(line.t_s, line.record) for line in stamped if line.event is None],
                              source=SOURCE_ARRIVAL, ready_s=ready_s, rules=RAY_PHASE_RULES,
                              extra_events={k: [v] for k, v in events.items()})
    return replace(timeline, reported={**timeline.reported, **ray_reported(events)})


class ReplayLauncher(Launcher):
    """Starts the replay server on ``--coldstart-replay-log`` at ``--coldstart-replay-speed``."""

    kind = "replay"
    #: vLLM's table for budgets and reports; a Ray Serve capture's timeline has Ray's (``RAY_PHASE_RULES``).
    phase_rules = PHASE_RULES
    replays = True
    options = REPLAY_OPTIONS

    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        log_text = spec.launcher_options.get("replay_log", "")
        if not log_text:
            raise ConfigError("--coldstart-launcher replay needs --coldstart-replay-log FILE (a recorded server log)")
        log = Path(parse_log(log_text)).resolve()
        speed = float(parse_speed(spec.launcher_options.get("replay_speed", "1") or "1"))
        try:
            plan = plan_replay(log.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ReplayLogError) as exc:
            raise ConfigError(f"--coldstart-replay-log {log}: {exc}") from None
        argv = [sys.executable, "-m", "pytest_coldstart.launch.replay_server", "--log", str(log), "--speed",
                repr(speed), "--host", spec.host, "--port", str(spec.port), "--served-name", spec.served_name,
                "--kind", plan.kind]
        env = {**os.environ, **spec.env}
        process = OwnedProcess(argv, env=env, log_path=spec.log_path, clock=clock, redactor=Redactor.from_env(env))
        process.start()
        return ReplayServer(spec, process, clock, plan, speed, log)
