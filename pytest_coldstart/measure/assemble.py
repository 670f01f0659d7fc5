"""What one start produced, and the result file it becomes.

The runner (``measure.runner``) owns the order of a start's steps; this module
owns its values (``StartPlan`` before it, ``LiveRun`` during it) and turns
them into a ``RunResult``: the timeline (the log's, merged with the probe's
events and vLLM's spans where there are some), TTFT, readiness, the cold
check, and everything redacted with the server's own secrets (its argv, its
environment, URL passwords) as well as the harness's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.base import LaunchSpec, Server
from pytest_coldstart.launch.registry import get_launcher
from pytest_coldstart.launch.ttft import TTFTSample
from pytest_coldstart.logs.events import MergedTimeline, ProbeReport, merge_timeline, read_events
from pytest_coldstart.logs.timeline import PHASE_RULES, Timeline
from pytest_coldstart.measure import readiness as rd
from pytest_coldstart.measure.otlp import OtelRun
from pytest_coldstart.measure.profile import Profiler
from pytest_coldstart.model.case import CachePolicy, Case, ExitStatus
from pytest_coldstart.model.efficiency import LoadEfficiency
from pytest_coldstart.model.errors import LaunchError, failure_kind
from pytest_coldstart.model.records import CacheRecord, Environment, PhaseAgreement, Reported
from pytest_coldstart.model.redact import Redactor, redact_env
from pytest_coldstart.model.result import RunResult
from pytest_coldstart.optimize.base import CachePlan, StartContext, WeightSource

__all__ = ["LiveRun", "StartPlan", "cold_check", "describe_failure", "started_result", "tree_bytes",
           "unstarted_result"]


@dataclass(frozen=True)
class StartPlan:
    """Everything decided before a start: weights, caches, args and env (nothing spawned yet).

    :param run_root: this start's own scratch directory, removed after it.
    """

    case: Case
    context: StartContext
    source: WeightSource
    cache: CachePlan
    engine_args: tuple[str, ...]
    env: Mapping[str, str]

    @property
    def model_ref(self) -> str:
        return self.source.model_ref

    @property
    def run_root(self) -> Path:
        return self.context.run_root


@dataclass
class LiveRun:
    """What ``ColdStartRunner.launch`` yields: the ready server, then its result."""

    case: Case
    server: Server
    ttft: TTFTSample | None = None
    result: RunResult | None = None
    correctness: rd.Correctness | None = None
    warmth: rd.Warmth | None = None
    profiler: Profiler | None = None
    events_path: Path | None = None
    warm_error: str | None = None
    otel: OtelRun | None = None
    otel_note: str | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url


def describe_failure(exc: BaseException) -> str:
    """The error text saved with a failed start: never empty (a bare KeyboardInterrupt has no message)."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return f"interrupted ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); the server was stopped"
    text = str(exc)
    return text if text.strip() else type(exc).__name__


def tree_bytes(path: str | None) -> int | None:
    """Bytes of the regular files under *path* (None when it is not a directory)."""
    if not path or not Path(path).is_dir():
        return None
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


def cold_check(plan: StartPlan, server: Server, before_bytes: int | None) -> dict[str, Any]:
    """After the fact: did the measured start download its weights, as its policy says it must?

    An HF hub cache that holds more after the start than before it means the
    start fetched weights; a ``weights_download`` phase in the log says the same.
    """
    hub_bytes = tree_bytes(plan.env.get("HF_HUB_CACHE"))
    in_log = [p for p in server.timeline().phases if p.name == "weights_download" and p.observed]
    downloaded = (hub_bytes or 0) > (before_bytes or 0) or bool(in_log)
    expected = plan.source.kind == "hf" and plan.cache.policy != CachePolicy.WARM
    check: dict[str, Any] = {"weights_downloaded": downloaded, "hf_hub_bytes_after": hub_bytes}
    if plan.source.kind == "hf":
        check["cold_verified"] = downloaded == expected
        if downloaded != expected:
            check["cold_note"] = ("expected the weights to be downloaded (fresh HF hub cache) but they were not: "
                                  "a cache was warm" if expected else "weights were downloaded on a warm start")
    return check


def merged_timeline(live: LiveRun) -> MergedTimeline | None:
    """The log timeline with the probe's events and vLLM's spans (vLLM launchers only: Ray's phases are its own)."""
    launcher = get_launcher(live.case.launcher)
    if (live.events_path is None and live.otel is None) or launcher.replays \
            or launcher.phase_rules is not PHASE_RULES:
        return None
    process = live.server.process
    probe = read_events(live.events_path, process.spawn_s) if live.events_path else ProbeReport(())
    otel = None
    if live.otel is not None:
        try:
            otel = live.otel.report(process.spawn_s)
        except Exception as exc:  # the spans are a bonus: the start stays measured from logs and the probe
            live.otel.notes.append(f"spans not used: {type(exc).__name__}: {exc}")
    return merge_timeline(process.lines(), ready_s=live.server.ready_s, probe=probe, api_pid=process.pid,
                          otel=otel)


def _extras(live: LiveRun, merged: MergedTimeline | None, timeline: Timeline) -> dict[str, Any]:
    """The optional parts of a started result: probe and span edges, readiness, the profile."""
    extra: dict[str, Any] = {}
    if merged is not None:
        extra["probe"] = {"events_path": str(live.events_path) if live.events_path else None,
                          "events": len(merged.probe.events), "missing": list(merged.probe.missing)}
        if merged.probe.events or merged.otel.events:
            extra.update(sub_phases=merged.sub_phases, log_phases=merged.log_timeline.phases,
                         phase_agreement=tuple(PhaseAgreement.from_dict(d.to_dict()) for d in merged.agreement))
            extra["probe"]["edges"] = dict(merged.edges)  # phase -> who timed its end: "otel" or "plugin"
    if "sub_phases" not in extra and timeline.sub_phases:
        extra["sub_phases"] = dict(timeline.sub_phases)  # the log's split of weights_load (and MTP captures)
    if live.otel is not None or live.otel_note:
        otel = live.otel.summary(merged.otel if merged else None) if live.otel is not None else {}
        if live.otel_note:
            otel["notes"] = [live.otel_note]
        extra.setdefault("probe", {})["otel"] = otel
    readiness: dict[str, Any] = {}
    if live.correctness is not None:
        extra["correct"] = live.correctness.correct
        readiness["correct"] = live.correctness.to_dict()
    if live.warmth is not None:
        extra["warm_s"] = live.warmth.warm_s
        readiness["warm"] = live.warmth.to_dict()
    elif live.warm_error:
        readiness["warm"] = {"warm_s": None, "error": live.warm_error}
    extra["readiness"] = readiness
    if live.profiler is not None:
        extra["profile"] = live.profiler.summarize(timeline.phases)
    return extra


@dataclass(frozen=True)
class Assessed:
    """What the runner's probes (run once per runner, after the stop) say of a start's load."""

    efficiency: LoadEfficiency | None
    pull_efficiency: LoadEfficiency | None


def started_result(live: LiveRun, spec: LaunchSpec, plan: StartPlan, *, started_at: str, environment: Environment,
                   record: Mapping[str, Any], status: ExitStatus, error: BaseException | None,
                   timeline: Timeline, merged: MergedTimeline | None, assessed: Assessed) -> RunResult:
    """The result of a start whose server was spawned (ready or not), redacted with its own secrets."""
    server, ttft, case = live.server, live.ttft, live.case
    redactor: Redactor = server.process.redactor  # the harness's secrets, the server's env and argv's
    return RunResult(
        model=case.model, optimization=case.optimization, launcher=case.launcher,
        cache_state=plan.cache.state, started_at=started_at, phases=timeline.phases,
        reported=Reported.from_dict(timeline.reported), total_ready_s=timeline.total_ready_s,
        ttft_s=ttft.ttft_s if ttft else None, first_response_s=ttft.first_response_s if ttft else None,
        unaccounted_s=timeline.unaccounted_s, environment=environment, exit_status=status,
        log_path=str(spec.log_path), repeat_index=case.repeat_index, server_exit_code=server.exit_code,
        error=None if error is None else redactor.redact(describe_failure(error)),
        # No startup marker seen but /health answered (a launcher without a phase table): "ready".
        last_phase=timeline.last_phase_reached or ("ready" if server.ready_s is not None else None),
        server_argv=tuple(redactor.redact(arg) for arg in server.process.argv),
        env_overrides=redact_env(spec.env, redactor),
        cache=CacheRecord.from_dict(redactor.redact_value({**plan.cache.record, **record})),
        efficiency=assessed.efficiency, pull_efficiency=assessed.pull_efficiency, replay=server.provenance(),
        **_extras(live, merged, timeline),
    )


def unstarted_result(case: Case, plan: StartPlan, *, started_at: str, environment: Environment,
                     exc: BaseException) -> RunResult:
    """The result of a start that failed before its measured server was spawned (preflight, populate, fetch)."""
    status = failure_kind(exc)
    if status == ExitStatus.HARNESS_ERROR and not isinstance(exc, LaunchError):
        status = ExitStatus.PREFLIGHT_FAILED  # S3, the compile cache, the disk: nothing of the server ran
    redactor = Redactor.for_server(plan.env)
    return RunResult(
        model=case.model, optimization=case.optimization, launcher=case.launcher, cache_state=plan.cache.state,
        started_at=started_at, phases=(), reported=Reported(), total_ready_s=None, ttft_s=None, first_response_s=None,
        unaccounted_s=None, environment=environment, exit_status=status,
        log_path=str(getattr(exc, "log_path", None) or ""), repeat_index=case.repeat_index,
        server_exit_code=getattr(exc, "exit_code", None), error=redactor.redact(describe_failure(exc)),
        last_phase=getattr(exc, "last_phase", None), env_overrides=redact_env(plan.env, redactor),
        cache=CacheRecord.from_dict(redactor.redact_value(dict(plan.cache.record))))
