"""One cold start end to end: plan -> prepare -> launch -> ready -> TTFT -> stop -> result.

The pure core the pytest plugin and the CLI call; it never imports pytest.
Optimizations come in as strategies (``optimize.registry``), servers as
launchers (``launch.registry``); the runner owns the order of the steps, the
one unmeasured populate start a compile cache may need, and the result.

Outside pytest, use it as a context manager and let it see Ctrl-C::

    runner = ColdStartRunner(settings, load_registry(Path("benchmarks")))
    with runner.launch(Case("tiny-llama", "baseline")) as live:
        ...  # live.base_url serves; the server is stopped and the result saved on exit
    print(live.result.total_ready_s)

Every server runs in a session of its own and is stopped (TERM, grace, KILL,
then anything left in its tree, session or carrying its marker) when the block
exits, also on ``KeyboardInterrupt``. A process killed with SIGKILL cannot
clean up after itself: send SIGINT or SIGTERM. Outside pytest, wrap the work
in :func:`stop_on_signals` so SIGTERM (and SIGHUP) become an interrupt too, as
the pytest plugin does::

    with stop_on_signals(), runner.launch(case) as live:
        ...

A second SIGINT/SIGTERM while a server is being stopped kills its whole tree
at once (``OwnedProcess.stop``).

Every start ends in a result with a failure kind (``ExitStatus``): the
server's (``server_exited``, ``timeout``, ``unhealthy``) or the harness's
(``interrupted``, ``harness_error``, ``preflight_failed``), so the gate can
tell "this change broke the start" from "the run was cut short".
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.base import LaunchSpec, Server, check_port_free, free_port
from pytest_coldstart.launch.registry import get_launcher
from pytest_coldstart.launch.ttft import TTFTSample, measure_ttft
from pytest_coldstart.logs.events import ENV_EVENTS_FILE, MergedTimeline, ProbeReport, merge_timeline, read_events
from pytest_coldstart.logs.timeline import PHASE_RULES, Timeline
from pytest_coldstart.measure import readiness as rd
from pytest_coldstart.measure.environment import collect_environment
from pytest_coldstart.measure.floors import FloorResolver
from pytest_coldstart.measure.otlp import OtelRun, OtlpUnavailable, otel_support, start_otel
from pytest_coldstart.measure.profile import Profiler
from pytest_coldstart.measure.registry_floor import RegistryFloors
from pytest_coldstart.model.case import CachePolicy, Case, ExitStatus
from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.efficiency import LoadEfficiency
from pytest_coldstart.model.errors import (
    ColdstartError,
    HarnessError,
    LaunchError,
    LogWriteError,
    PortInUseError,
    PreflightError,
    ReadinessTimeout,
    ServerExitedError,
    UnhealthyError,
)
from pytest_coldstart.model.records import CacheRecord, Environment, PhaseAgreement, Probe, Profile, Readiness, Reported
from pytest_coldstart.model.redact import redact_env
from pytest_coldstart.model.registry import Registry, split_source
from pytest_coldstart.model.result import RunResult, check_writable, write_result
from pytest_coldstart.optimize import compile_cache as cc
from pytest_coldstart.optimize.base import CachePlan, PopulateOutcome, StartContext, WeightSource
from pytest_coldstart.optimize.caches import compile_key, local_cache_dir
from pytest_coldstart.optimize.hygiene import Residency
from pytest_coldstart.optimize.hygiene import apply as apply_hygiene
from pytest_coldstart.optimize.registry import cache_strategy, source_strategy

#: Launchers whose vLLM runs here and can reach the harness's loopback receiver (a container cannot).
OTEL_LAUNCHERS = frozenset({"vllm"})

__all__ = ["Case", "ColdStartRunner", "LiveRun", "ProgressFn", "Settings", "StartPlan", "failure_kind",
           "stop_on_signals"]

#: Free space a start needs besides its weights: its log, the compile/Inductor/Triton caches, the result.
START_RESERVE_BYTES = 512 * 2**20
RESULTS_RESERVE_BYTES = 64 * 2**20


def failure_kind(exc: BaseException) -> ExitStatus:
    """How a start that raised *exc* ended: the server's failure, or the harness's."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return ExitStatus.INTERRUPTED
    if isinstance(exc, UnhealthyError):
        return ExitStatus.UNHEALTHY
    if isinstance(exc, ReadinessTimeout):
        return ExitStatus.TIMEOUT
    if isinstance(exc, ServerExitedError):
        return ExitStatus.SERVER_EXITED
    if isinstance(exc, (PreflightError, PortInUseError)):
        return ExitStatus.PREFLIGHT_FAILED
    if isinstance(exc, LogWriteError):
        return ExitStatus.HARNESS_ERROR
    if isinstance(exc, LaunchError):  # a launcher's own "it ran but could not serve" (a failed first request)
        return ExitStatus.UNHEALTHY
    return ExitStatus.HARNESS_ERROR


def describe_failure(exc: BaseException) -> str:
    """The error text saved with a failed start: never empty (a bare KeyboardInterrupt has no message)."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return f"interrupted ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); the server was stopped"
    text = str(exc)
    return text if text.strip() else type(exc).__name__


@contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, *signals* raise ``KeyboardInterrupt`` so every ``launch`` block stops its server.

    For users of the runner API outside pytest (the plugin does the same for
    SIGTERM). Outside the main thread, or where a handler is already set, it
    changes nothing. The previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}: stopping cold-start servers")

    previous = {}
    for sig in signals:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``; Python 3.10 has no add_note, but the plugin reads ``__notes__`` the same way."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        # PEP 678's attribute, which 3.10's BaseException does not declare.
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]  # type: ignore[attr-defined]


def _tree_bytes(path: str | None) -> int | None:
    """Bytes of the regular files under *path* (None when it is not a directory)."""
    if not path or not Path(path).is_dir():
        return None
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


def check_free_space(needs: Mapping[Path, int]) -> None:
    """Refuse a start when a directory it writes to has less free space than it needs (bytes)."""
    for path, need in needs.items():
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            continue
        if free < need:
            raise PreflightError(f"only {free / 2**20:.0f} MiB free at {path}; this start needs about "
                                 f"{need / 2**20:.0f} MiB there (log, caches, weights). Free space, or point "
                                 "--coldstart-results / --coldstart-workdir at a bigger disk")

#: (case id, phase in progress or a note, seconds since spawn)
ProgressFn = Callable[[str, str, float], None]


@dataclass(frozen=True)
class Settings:
    """Plain values the plugin or CLI resolved from options."""

    registry_dir: Path
    results_dir: Path
    workdir: Path
    repo_dir: Path
    timeout_s: float = 900.0
    port: int = 0
    python: str = sys.executable
    #: Passed to the launcher as is (``ray-serve``: ray_address, ray_replicas).
    launcher_options: tuple[tuple[str, str], ...] = ()
    #: ``--coldstart-profile``: py-spy samples every server process (speedscope file per run).
    profile: bool = False
    #: Ask the in-vLLM probe for step events (inert where the entry point is not installed).
    probe: bool = True
    #: ``--coldstart-otel``: receive vLLM's own OpenTelemetry startup spans (0.16+, OpenTelemetry in the
    #: server's Python) on a loopback OTLP receiver; they set the phase edges they cover.
    otel: bool = True
    #: Requests after TTFT that decide ``warm_s`` (0: not measured).
    warm_requests: int = rd.WARM_REQUESTS


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


class ColdStartRunner:
    """Measures cold starts of the registry's models under its optimizations."""

    def __init__(self, settings: Settings, registry: Registry, *, clock: Clock | None = None,
                 progress: ProgressFn | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.clock = clock or SystemClock()
        self.progress = progress
        self._environment: Environment | None = None
        #: Every result this runner saved, failed ones included, in order.
        self.results: list[RunResult] = []
        self._floors: FloorResolver | None = None
        self._registry_floors: RegistryFloors | None = None
        self._otel_support: dict[str, tuple[bool, str]] = {}

    @property
    def environment(self) -> Environment:
        if self._environment is None:
            self._environment = Environment.from_dict(collect_environment(self.settings.repo_dir))
        return self._environment

    def say(self, case: Case, note: str, elapsed_s: float = 0.0) -> None:
        """A progress note for *case* (shown by the plugin while a start runs)."""
        if self.progress is not None:
            self.progress(case.id, note, elapsed_s)

    def context(self, case: Case, run_root: Path) -> StartContext:
        """The frozen context the strategies of *case* get."""
        return StartContext(case=case, model=self.registry.model(case.model),
                            optimization=self.registry.optimization(case.optimization),
                            workdir=self.settings.workdir.resolve(), run_root=run_root,
                            versions={"vllm": self.environment.vllm, "torch": self.environment.torch},
                            python=self.settings.python, clock=self.clock,
                            say=lambda note: self.say(case, note),
                            launcher_options=dict(self.settings.launcher_options))

    def plan(self, case: Case) -> StartPlan:
        """Ready the weights and decide the caches of one start (a fresh run directory; nothing spawned)."""
        get_launcher(case.launcher)  # an unknown launcher fails before any work
        run_root = (self.settings.workdir / "cache" / "run" / uuid.uuid4().hex[:12]).resolve()
        run_root.mkdir(parents=True)
        try:
            ctx = self.context(case, run_root)
            kind, ref = split_source(ctx.model.source_for(case.optimization))
            source = source_strategy(kind).prepare(ctx, ref)
            cache = cache_strategy(ctx.optimization.cache).plan(ctx, source)
        except BaseException:
            shutil.rmtree(run_root, ignore_errors=True)
            raise
        env = {**source.env, **dict(ctx.model.env), **dict(ctx.optimization.env), **cache.env}
        return StartPlan(case, ctx, source, cache, ctx.engine_args, env)

    def compile_cache_key(self, case: Case) -> tuple[cc.CacheKey, Path]:
        """The key of *case*'s compile cache and where the local store keeps it (``coldstart cache``)."""
        ctx = self.context(case, self.settings.workdir / "cache" / "run" / "unused")
        kind, ref = split_source(ctx.model.source_for(case.optimization))
        # The same --model string a start hands vLLM (vLLM hashes it into its cache path).
        key = compile_key(ctx, source_strategy(kind).resolve(ctx, ref))
        return key, local_cache_dir(ctx, key)

    def _spec(self, case: Case, plan: StartPlan, env: Mapping[str, str], log_name: str) -> LaunchSpec:
        model = self.registry.model(case.model)
        port = self.settings.port
        if port:
            check_port_free("127.0.0.1", port)
        else:
            port = free_port()
        return LaunchSpec(model_ref=plan.model_ref, served_name=model.served_name, port=port,
                          log_path=self.settings.results_dir / "logs" / log_name, timeout_s=self.settings.timeout_s,
                          tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
                          engine_args=plan.engine_args, env=dict(env), python=self.settings.python,
                          # The cache plan's own (image_cached: keep the image) over the run's.
                          launcher_options={**dict(self.settings.launcher_options),
                                            **dict(plan.cache.launcher_options)})

    def _populate(self, plan: StartPlan, overrides: Mapping[str, str]) -> PopulateOutcome:
        """One unmeasured start of *plan*'s case with *overrides* (a compile cache to fill)."""
        case = plan.case
        env = {**plan.env, **overrides}
        populate_hub: Path | None = None
        if "HF_HUB_CACHE" in plan.env:
            # Its own HF hub cache, removed after it: weights it downloads must not be found by the measured start.
            populate_hub = plan.run_root / "populate_hf_hub"
            populate_hub.mkdir(parents=True, exist_ok=True)
            env["HF_HUB_CACHE"] = str(populate_hub)
        spec = self._spec(case, plan, env, f"{self._stamp()}_{case.id}_populate.log")
        server = get_launcher(case.launcher).start(spec, self.clock)
        try:
            server.wait_ready(lambda phase, t: self.say(case, f"populate: {phase}", t))
            if server.starts_on_first_request:  # Ray scale-from-zero: compiling happens on the first request
                server.first_token(spec.served_name, timeout_s=self.settings.timeout_s,
                                   progress=lambda phase, t: self.say(case, f"populate: {phase}", t))
        except LaunchError as exc:  # same kind: a populate the server failed is the server's failure
            raise type(exc)(f"populating the torch.compile cache failed: {exc.summary}", last_phase=exc.last_phase,
                            elapsed_s=exc.elapsed_s, log_tail=exc.log_tail, log_path=exc.log_path,
                            exit_code=exc.exit_code, hint=exc.hint) from None
        finally:
            try:
                server.stop()
            except KeyboardInterrupt:  # a second interrupt: no more grace
                server.process.kill_tree()
                raise
            if populate_hub is not None:
                shutil.rmtree(populate_hub, ignore_errors=True)
        return PopulateOutcome(str(spec.log_path))

    def prepare(self, plan: StartPlan) -> StartPlan:
        """Fill the caches the plan needs (an unmeasured populate start, an S3 fetch)."""
        cache = cache_strategy(plan.cache.policy).ready(plan.context, plan.cache,
                                                        lambda overrides: self._populate(plan, overrides))
        return StartPlan(plan.case, plan.context, plan.source, cache, plan.engine_args, plan.env)

    def _stamp(self) -> str:
        return self.clock.wall().strftime("%Y%m%dT%H%M%S")

    @contextmanager
    def launch(self, case: Case) -> Iterator[LiveRun]:
        """Start the server cold, wait for /health, measure TTFT, yield it live.

        On exit the server is stopped (TERM, grace, KILL), the result is written
        to ``results/runs/`` (also for a failed start) and set on the LiveRun.
        A failed start raises ``LaunchError`` (or the interrupt that stopped it);
        an exception from the caller's own block is the caller's: the start is
        saved as measured and the exception goes on unchanged.
        """
        check_writable(self.settings.results_dir)
        plan = self.plan(case)
        try:
            started_at = self.clock.wall().isoformat()
            try:
                check_free_space(self._space_needs(plan))
                plan = self.prepare(plan)
            except BaseException as exc:  # populate, S3 fetch, disk: saved with its kind, then raised as is
                self._save_unstarted(case, plan, started_at, exc)
                raise
            hygiene_record = {**apply_hygiene(plan.cache.hygiene).to_record(),
                              "hf_hub_bytes_before": _tree_bytes(plan.env.get("HF_HUB_CACHE"))}
            started_at = self.clock.wall().isoformat()
            log_name = f"{self._stamp()}_{case.id}"
            events_path = self.settings.results_dir / "logs" / f"{log_name}.events.jsonl"
            env = {**plan.env, ENV_EVENTS_FILE: str(events_path.resolve())} if self.settings.probe else plan.env
            spec = self._spec(case, plan, env, f"{log_name}.log")
            otel, otel_note = self._otel(case, spec, self.settings.results_dir / "logs" / f"{log_name}.otel.jsonl")
            if otel is not None:  # the flags go on the spec only: the plan's engine args key the oracle
                spec = dataclasses.replace(spec, engine_args=(*spec.engine_args, *otel.engine_args),
                                           env={**spec.env, **otel.env})
                otel.anchor(self.clock)
            try:
                server = get_launcher(case.launcher).start(spec, self.clock)
            except BaseException:
                if otel is not None:
                    otel.stop()
                raise
            live = LiveRun(case, server, events_path=events_path if self.settings.probe else None, otel=otel,
                           otel_note=otel_note)
            if self.settings.profile:
                live.profiler = Profiler(self.settings.results_dir / "profiles", log_name)
                live.profiler.start(server.process.pid, server.process.elapsed_s())
            error: BaseException | None = None
            status = ExitStatus.OK
            try:
                server.wait_ready(lambda phase, t: self.say(case, phase, t))
                self.say(case, "ready; measuring time to first token", server.ready_s or 0.0)
                # One deadline per start: what is left of --coldstart-timeout after ready.
                left_s = self.settings.timeout_s - server.process.elapsed_s()
                live.ttft = server.first_token(spec.served_name, timeout_s=left_s,
                                               progress=lambda phase, t: self.say(case, phase, t))
                error, status = self._readiness(live, spec, plan)
            except BaseException as exc:  # an interrupt too: the server is stopped and the attempt saved
                error, status = exc, failure_kind(exc)
            finish = lambda: self._finish(live, spec, started_at, plan, hygiene_record, status, error)  # noqa: E731
            if error is None:
                try:
                    yield live
                except BaseException:
                    finish()  # the caller's failure stays the caller's: saved as measured, re-raised as is
                    raise
            error = finish()
            if error is not None:
                if isinstance(error, Exception) and not isinstance(error, (LaunchError, HarnessError)):
                    raise LaunchError(f"{case.id}: {type(error).__name__}: {error}",
                                      last_phase=live.result.last_phase if live.result else None,
                                      log_tail=server.process.tail(50), log_path=str(spec.log_path)) from error
                raise error
        finally:
            shutil.rmtree(plan.run_root, ignore_errors=True)

    def _space_needs(self, plan: StartPlan) -> dict[Path, int]:
        """Bytes a start writes, per directory: the log and result; caches, and weights it downloads."""
        workdir = START_RESERVE_BYTES
        if plan.source.kind == "hf" and plan.cache.policy != CachePolicy.WARM:
            workdir += int((plan.context.model.weight_bytes or 0) * 1.05)
        return {self.settings.results_dir: RESULTS_RESERVE_BYTES, plan.run_root: workdir}

    def _save(self, result: RunResult, error: BaseException | None) -> BaseException | None:
        """Write *result*; a failed write never replaces the error the start ended with.

        Returns the error to raise: the start's own (with a note that its result
        was lost), or a ``HarnessError`` when the start itself was fine.
        """
        try:
            write_result(self.settings.results_dir, result)
        except (OSError, ColdstartError) as exc:
            why = f"the result of {result.key.label} r{result.repeat_index} could not be saved: {exc}"
            if error is not None:
                _add_note(error, why)
                return error
            return HarnessError(why + "; free space under --coldstart-results and run it again")
        self.results.append(result)
        return error

    def _save_unstarted(self, case: Case, plan: StartPlan, started_at: str, exc: BaseException) -> None:
        """Save a start that failed before its measured server was spawned (preflight, populate, fetch)."""
        status = failure_kind(exc)
        if status == ExitStatus.HARNESS_ERROR and not isinstance(exc, LaunchError):
            status = ExitStatus.PREFLIGHT_FAILED  # S3, the compile cache, the disk: nothing of the server ran
        result = RunResult(
            model=case.model, optimization=case.optimization, launcher=case.launcher, cache_state=plan.cache.state,
            started_at=started_at, phases=(), reported=Reported(), total_ready_s=None, ttft_s=None, first_response_s=None,
            unaccounted_s=None, environment=self.environment, exit_status=status,
            log_path=str(getattr(exc, "log_path", None) or ""), repeat_index=case.repeat_index,
            server_exit_code=getattr(exc, "exit_code", None), error=describe_failure(exc),
            last_phase=getattr(exc, "last_phase", None), env_overrides=redact_env(plan.env),
            cache=CacheRecord.from_dict(plan.cache.record))
        self._save(result, exc)

    def _finish(self, live: LiveRun, spec: LaunchSpec, started_at: str, plan: StartPlan,
                hygiene_record: Mapping[str, Any], status: ExitStatus, error: BaseException | None) -> BaseException | None:
        """Stop the server, save the result; returns the error the start ended with (None if it did not)."""
        server = live.server
        if live.profiler is not None:
            live.profiler.stop()
        try:
            server.stop()
        except KeyboardInterrupt as exc:  # a second interrupt: KILL the whole tree now; still save the attempt
            server.process.kill_tree()  # a launcher's own stop (Ray's SIGINT wait) may not have got that far
            if error is None:
                error, status = exc, ExitStatus.INTERRUPTED
        finally:
            if live.otel is not None:  # after the server: its exit flushes the last batch of spans
                live.otel.stop()
        leftovers = server.process.descendants()
        if leftovers and error is None:
            status = ExitStatus.HARNESS_ERROR
            error = HarnessError(f"{len(leftovers)} server process(es) survived stop: {[p.pid for p in leftovers]}")
        cold = self._cold_check(plan, server, hygiene_record.get("hf_hub_bytes_before"))
        live.result = self._result(live.case, spec, server, live.ttft, started_at, plan, {**hygiene_record, **cold},
                                   status, error, live)
        return self._save(live.result, error)

    def _cold_check(self, plan: StartPlan, server: Server, before_bytes: int | None) -> dict[str, Any]:
        """After the fact: did the measured start download its weights, as its policy says it must?

        An HF hub cache that holds more after the start than before it means
        the start fetched weights; a ``weights_download`` phase in the log says
        the same.
        """
        hub_bytes = _tree_bytes(plan.env.get("HF_HUB_CACHE"))
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

    def run(self, case: Case) -> RunResult:
        """Measure one cold start and return its (already saved) result."""
        with self.launch(case) as live:
            pass
        assert live.result is not None
        return live.result

    def _readiness(self, live: LiveRun, spec: LaunchSpec, plan: StartPlan) -> tuple[BaseException | None, ExitStatus]:
        """``correct`` and ``warm_s`` after TTFT (measure/readiness.py); wrong tokens fail the start (fail closed)."""
        server, ttft = live.server, live.ttft
        if ttft is None or server.starts_on_first_request:
            return None, ExitStatus.OK
        vllm_version = self.environment.vllm
        about = {"model": live.case.model, "vllm": vllm_version, "engine_args": list(plan.engine_args)}
        key = rd.oracle_key(live.case.model, vllm_version, plan.engine_args, launcher=live.case.launcher)
        live.correctness = rd.check_correct(rd.OracleStore(self.settings.workdir / "oracles"), key, ttft, about)
        if self.settings.warm_requests > 0 and server.ready_s is not None:
            try:
                live.warmth = rd.measure_warmth(
                    lambda: measure_ttft(server.base_url, spec.served_name, self.clock, timeout_s=60.0),
                    server.process.elapsed_s, ttft, server.ready_s, n=self.settings.warm_requests)
            except Exception as exc:  # a failed warm-up request leaves warm_s unmeasured, not the start failed
                live.warm_error = f"warm-up request failed: {type(exc).__name__}: {exc}"
        if live.correctness.correct is False:
            return LaunchError(f"{live.case.id}: {live.correctness.detail}"), ExitStatus.UNHEALTHY  # served wrong tokens
        return None, ExitStatus.OK

    def _otel(self, case: Case, spec: LaunchSpec, events_path: Path) -> tuple[OtelRun | None, str | None]:
        """A span receiver for this start, or why there is none (said once per runner; never fails a start)."""
        if not self.settings.otel or case.launcher not in OTEL_LAUNCHERS:
            return None, None
        if any(arg.startswith("--otlp-traces-endpoint") for arg in spec.engine_args):
            return None, "the case sets its own --otlp-traces-endpoint: its spans go there, not to the harness"
        python = self.settings.python
        first = python not in self._otel_support
        if first:
            self._otel_support[python] = otel_support(python)
        ok, why = self._otel_support[python]
        if not ok:
            if first:
                self.say(case, f"no OpenTelemetry spans: {why}")
            return None, why
        try:
            return start_otel(self.clock, events_path), None
        except (OtlpUnavailable, OSError) as exc:
            note = f"OTLP receiver not started ({exc}): phases from log lines and the probe"
            self.say(case, note)
            return None, note

    def _merged(self, live: LiveRun) -> MergedTimeline | None:
        """The log timeline with the probe's events and vLLM's spans (vLLM launchers only: Ray's phases are its own)."""
        if (live.events_path is None and live.otel is None) \
                or get_launcher(live.case.launcher).phase_rules is not PHASE_RULES:
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

    def _result(self, case: Case, spec: LaunchSpec, server: Server, ttft: TTFTSample | None, started_at: str,
                plan: StartPlan, hygiene_record: Mapping[str, Any], status: ExitStatus,
                error: BaseException | None, live: LiveRun | None = None) -> RunResult:
        merged = self._merged(live) if live is not None else None
        timeline = merged.timeline if merged is not None else server.timeline()
        extra: dict[str, Any] = {}
        probe: dict[str, Any] = {}
        if merged is not None:
            probe = {"events_path": str(live.events_path) if live and live.events_path else None,
                     "events": len(merged.probe.events), "missing": list(merged.probe.missing)}
            if merged.probe.events or merged.otel.events:
                extra.update(sub_phases=merged.sub_phases, log_phases=merged.log_timeline.phases,
                             phase_agreement=tuple(PhaseAgreement.from_dict(d.to_dict()) for d in merged.agreement))
                probe["edges"] = dict(merged.edges)  # phase -> who timed its end: "otel" or "plugin"
        if live is not None and (live.otel is not None or live.otel_note):
            otel = live.otel.summary(merged.otel if merged else None) if live.otel is not None else {}
            if live.otel_note:
                otel["notes"] = [live.otel_note]
            probe["otel"] = otel
        if probe:
            extra["probe"] = Probe.from_dict(probe)
        if live is not None:
            readiness: dict[str, Any] = {}
            if live.correctness is not None:
                extra["correct"] = live.correctness.correct
                readiness["correct"] = live.correctness.to_dict()
            if live.warmth is not None:
                extra["warm_s"] = live.warmth.warm_s
                readiness["warm"] = live.warmth.to_dict()
            elif live.warm_error:
                readiness["warm"] = {"warm_s": None, "error": live.warm_error}
            extra["readiness"] = Readiness.from_dict(readiness)
            if live.profiler is not None:
                extra["profile"] = Profile.from_dict(live.profiler.summarize(timeline.phases))
        return RunResult(
            model=case.model, optimization=case.optimization, launcher=case.launcher,
            cache_state=plan.cache.state, started_at=started_at, phases=timeline.phases,
            reported=Reported.from_dict(timeline.reported), total_ready_s=timeline.total_ready_s,
            ttft_s=ttft.ttft_s if ttft else None, first_response_s=ttft.first_response_s if ttft else None,
            unaccounted_s=timeline.unaccounted_s, environment=self.environment, exit_status=status,
            log_path=str(spec.log_path), repeat_index=case.repeat_index, server_exit_code=server.exit_code,
            error=None if error is None else describe_failure(error),
            # No startup marker seen but /health answered (a launcher without a phase table): "ready".
            last_phase=timeline.last_phase_reached or ("ready" if server.ready_s is not None else None),
            server_argv=tuple(server.process.argv), env_overrides=redact_env(spec.env),
            cache=CacheRecord.from_dict({**plan.cache.record, **hygiene_record}),
            efficiency=self._efficiency(case, timeline, hygiene_record),
            pull_efficiency=self._pull_efficiency(timeline), **extra,
        )

    def _efficiency(self, case: Case, timeline: Timeline, hygiene_record: Mapping[str, Any]) -> LoadEfficiency:
        # Runs after stop(): the disk and host->GPU probes (once per runner) never compete with a measured start.
        if self._floors is None:
            self._floors = FloorResolver(self.settings.workdir / "probe", clock=self.clock)
        weights = hygiene_record.get("page_cache_weights")  # residency right before the start
        share = Residency.from_dict(weights).share if weights else None
        return self._floors.assess_run(self.registry.model(case.model), case.optimization, timeline.phases,
                                       timeline.reported, resident_share=share)

    def _pull_efficiency(self, timeline: Timeline) -> LoadEfficiency | None:
        """Docker starts: the image pull vs the registry's floor (probed after stop, once per image)."""
        if "image" not in timeline.reported:
            return None
        if self._registry_floors is None:
            self._registry_floors = RegistryFloors(clock=self.clock)
        return self._registry_floors.assess(timeline.phases, timeline.reported)
