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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.base import LaunchSpec, Server, check_port_free, free_port
from pytest_coldstart.launch.process import describe_process
from pytest_coldstart.launch.registry import get_launcher
from pytest_coldstart.launch.ttft import measure_ttft
from pytest_coldstart.logs.events import ENV_EVENTS_FILE
from pytest_coldstart.logs.timeline import Timeline
from pytest_coldstart.measure import readiness as rd
from pytest_coldstart.measure.assemble import (
    Assessed,
    LiveRun,
    StartPlan,
    cold_check,
    describe_failure,
    merged_timeline,
    started_result,
    tree_bytes,
    unstarted_result,
)
from pytest_coldstart.measure.environment import collect_environment
from pytest_coldstart.measure.floors import FloorResolver
from pytest_coldstart.measure.otlp import OtelRun, OtlpUnavailable, otel_support, start_otel
from pytest_coldstart.measure.profile import Profiler
from pytest_coldstart.measure.registry_floor import RegistryFloors
from pytest_coldstart.model.case import CachePolicy, Case, ExitStatus
from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.efficiency import LoadEfficiency
from pytest_coldstart.model.errors import ColdstartError, HarnessError, LaunchError, PreflightError, failure_kind
from pytest_coldstart.model.paths import remove_quietly, under
from pytest_coldstart.model.records import Environment
from pytest_coldstart.model.registry import Registry, split_source
from pytest_coldstart.model.result import RunResult, check_writable, write_result
from pytest_coldstart.optimize import compile_cache as cc
from pytest_coldstart.optimize.base import PopulateOutcome, StartContext
from pytest_coldstart.optimize.caches import compile_key, local_cache_dir
from pytest_coldstart.optimize.hygiene import Residency
from pytest_coldstart.optimize.hygiene import apply as apply_hygiene
from pytest_coldstart.optimize.registry import cache_strategy, source_strategy

#: Launchers whose vLLM runs here and can reach the harness's loopback receiver (a container cannot).
OTEL_LAUNCHERS = frozenset({"vllm"})

__all__ = ["Case", "ColdStartRunner", "LiveRun", "ProgressFn", "Settings", "StartPlan", "describe_failure",
           "failure_kind", "stop_on_signals"]

#: Free space a start needs besides its weights: its log, the compile/Inductor/Triton caches, the result.
START_RESERVE_BYTES = 512 * 2**20
RESULTS_RESERVE_BYTES = 64 * 2**20


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

@dataclass
class StartEnd:
    """How a start is ending, as its steps learn it: the error and its kind, and whether the caller's own
    block failed (then the caller's exception goes on as is)."""

    error: BaseException | None = None
    status: ExitStatus = ExitStatus.OK
    caller_failed: bool = False

    def interrupted(self, exc: BaseException) -> None:
        """A second interrupt during the stop: the start ends interrupted unless it had already failed."""
        if self.error is None:
            self.error, self.status = exc, ExitStatus.INTERRUPTED


def survivors_error(server: Server) -> HarnessError | None:
    """After a stop: the error naming each process of *server* still running (pid and command line), if any."""
    leftovers = [server.process.redactor.redact(describe_process(p)) for p in server.process.descendants()]
    if not leftovers:
        return None
    return HarnessError(f"{len(leftovers)} server process(es) survived the stop: {'; '.join(leftovers)}; stop them "
                        "by hand (kill PID) and look at how the server daemonizes")


@contextmanager
def _receiving(otel: OtelRun | None) -> Iterator[OtelRun | None]:
    """The span receiver of a start (or none), stopped on exit."""
    try:
        yield otel
    finally:
        if otel is not None:
            otel.stop()


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
        # An unknown launcher, or one whose options name a bad config file, fails before any work.
        get_launcher(case.launcher).check_options(dict(self.settings.launcher_options))
        run_root = under(self._runs_root, uuid.uuid4().hex[:12])
        run_root.mkdir(parents=True)
        try:
            ctx = self.context(case, run_root)
            kind, ref = split_source(ctx.model.source_for(case.optimization))
            source = source_strategy(kind).prepare(ctx, ref)
            cache = cache_strategy(ctx.optimization.cache).plan(ctx, source)
        except BaseException:
            remove_quietly(self._runs_root, run_root)
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
                          log_path=under(self.settings.results_dir / "logs", log_name, what="log name (case id)"),
                          timeout_s=self.settings.timeout_s,
                          tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
                          engine_args=plan.engine_args, env=dict(env), python=self.settings.python,
                          # The cache plan's own (image_cached: keep the image) over the run's.
                          launcher_options={**dict(self.settings.launcher_options),
                                            **dict(plan.cache.launcher_options)})

    def _populate(self, plan: StartPlan, overrides: Mapping[str, str]) -> PopulateOutcome:
        """One unmeasured start of *plan*'s case with *overrides* (a compile cache to fill)."""
        case = plan.case
        env = {**plan.env, **overrides}
        with ExitStack() as steps:
            if "HF_HUB_CACHE" in plan.env:
                # Its own HF hub cache, removed after it: weights it downloads must not be found by the measured
                # start.
                populate_hub = plan.run_root / "populate_hf_hub"
                populate_hub.mkdir(parents=True, exist_ok=True)
                steps.callback(remove_quietly, plan.run_root, populate_hub)
                env["HF_HUB_CACHE"] = str(populate_hub)
            spec = self._spec(case, plan, env, f"{self._stamp()}_{case.id}_populate.log")
            with self._serving(case, spec, None) as server:  # a second interrupt in its stop: KILL, raised
                try:
                    server.wait_ready(lambda phase, t: self.say(case, f"populate: {phase}", t))
                    if server.starts_on_first_request:  # Ray scale-from-zero: compiling happens on the first request
                        server.first_token(spec.served_name, timeout_s=self.settings.timeout_s,
                                           progress=lambda phase, t: self.say(case, f"populate: {phase}", t))
                except LaunchError as exc:  # same kind: a populate the server failed is the server's failure
                    raise type(exc)(f"populating the torch.compile cache failed: {exc.summary}",
                                    last_phase=exc.last_phase, elapsed_s=exc.elapsed_s, log_tail=exc.log_tail,
                                    log_path=exc.log_path, exit_code=exc.exit_code, hint=exc.hint) from None
            survived = survivors_error(server)
            if survived is not None:  # nothing of any start may outlive it, an unmeasured one included
                raise survived
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

        The start reads as its steps; each resource is a context manager that
        owns its own cleanup (``contextlib.ExitStack``, last in, first out): the
        run's scratch directory, the span receiver (stopped after the server: its
        exit flushes the last spans), the server, the profiler (stopped first).
        """
        check_writable(self.settings.results_dir)
        plan = self.plan(case)
        with ExitStack() as scratch:
            scratch.callback(remove_quietly, self._runs_root, plan.run_root)
            plan = self._prepared(case, plan)
            hygiene_record = {**apply_hygiene(plan.cache.hygiene).to_record(),
                              "hf_hub_bytes_before": tree_bytes(plan.env.get("HF_HUB_CACHE"))}
            started_at = self.clock.wall().isoformat()
            log_name = f"{self._stamp()}_{case.id}"
            logs = self.settings.results_dir / "logs"
            events_path = under(logs, f"{log_name}.events.jsonl", what="log name (case id)")
            env = {**plan.env, ENV_EVENTS_FILE: str(events_path.resolve())} if self.settings.probe else plan.env
            spec = self._spec(case, plan, env, f"{log_name}.log")
            otel, otel_note = self._otel(case, spec, under(logs, f"{log_name}.otel.jsonl", what="log name (case id)"))
            if otel is not None:  # the flags go on the spec only: the plan's engine args key the oracle
                spec = dataclasses.replace(spec, engine_args=(*spec.engine_args, *otel.engine_args),
                                           env={**spec.env, **otel.env})
                otel.anchor(self.clock)
            end = StartEnd()
            live: LiveRun | None = None
            try:
                with ExitStack() as steps:
                    steps.enter_context(_receiving(otel))
                    server = steps.enter_context(self._serving(case, spec, end))
                    live = LiveRun(case, server, events_path=events_path if self.settings.probe else None,
                                   otel=otel, otel_note=otel_note)
                    steps.enter_context(self._profiling(live, log_name))
                    end.error, end.status = self._measure(live, spec, plan)
                    if end.error is None:
                        try:
                            yield live
                        except BaseException:
                            end.caller_failed = True
                            raise
            except BaseException:
                if live is not None and end.caller_failed:  # the caller's failure stays the caller's: saved as
                    self._finish(live, spec, started_at, plan, hygiene_record, end)  # measured, re-raised as is
                raise
            assert live is not None  # the steps only end without an exception once the server started
            error = self._finish(live, spec, started_at, plan, hygiene_record, end)
            if error is not None:
                if isinstance(error, Exception) and not isinstance(error, (LaunchError, HarnessError)):
                    raise LaunchError(f"{case.id}: {type(error).__name__}: {error}",
                                      last_phase=live.result.last_phase if live.result else None,
                                      log_tail=live.server.process.tail(50),
                                      log_path=str(spec.log_path)) from error
                raise error

    @property
    def _runs_root(self) -> Path:
        """Where each start's own scratch directory lives (and the only place one is removed from)."""
        return (self.settings.workdir / "cache" / "run").resolve()

    def _prepared(self, case: Case, plan: StartPlan) -> StartPlan:
        """Check the disk and fill the caches; a failure here (populate, S3 fetch, disk) is saved with its
        kind, then raised as is."""
        started_at = self.clock.wall().isoformat()
        try:
            check_free_space(self._space_needs(plan))
            return self.prepare(plan)
        except BaseException as exc:
            self._save(unstarted_result(case, plan, started_at=started_at, environment=self.environment, exc=exc),
                       exc)
            raise

    @contextmanager
    def _serving(self, case: Case, spec: LaunchSpec, end: StartEnd | None) -> Iterator[Server]:
        """The started server, stopped on exit; a second interrupt during the stop KILLs its whole tree at once
        and is recorded on *end* (the attempt is still saved), or raised where there is none."""
        server = get_launcher(case.launcher).start(spec, self.clock)
        try:
            yield server
        finally:
            try:
                server.stop()
            except KeyboardInterrupt as exc:
                server.process.kill_tree()  # a launcher's own stop (Ray's SIGINT wait) may not have got that far
                if end is None:
                    raise
                end.interrupted(exc)

    @contextmanager
    def _profiling(self, live: LiveRun, log_name: str) -> Iterator[None]:
        """py-spy on every server process while the block runs (``--coldstart-profile``)."""
        if not self.settings.profile:
            yield
            return
        live.profiler = Profiler(self.settings.results_dir / "profiles", log_name)
        live.profiler.start(live.server.process.pid, live.server.process.elapsed_s())
        try:
            yield
        finally:
            live.profiler.stop()

    def _measure(self, live: LiveRun, spec: LaunchSpec, plan: StartPlan) -> tuple[BaseException | None, ExitStatus]:
        """Ready, first token, readiness: the error the start ended with and its kind (an interrupt too)."""
        server, case = live.server, live.case
        try:
            server.wait_ready(lambda phase, t: self.say(case, phase, t))
            self.say(case, "ready; measuring time to first token", server.ready_s or 0.0)
            # One deadline per start: what is left of --coldstart-timeout after ready.
            left_s = self.settings.timeout_s - server.process.elapsed_s()
            live.ttft = server.first_token(spec.served_name, timeout_s=left_s,
                                           progress=lambda phase, t: self.say(case, phase, t))
            return self._readiness(live, spec, plan)
        except BaseException as exc:  # an interrupt too: the server is stopped and the attempt saved
            return exc, failure_kind(exc)

    def _space_needs(self, plan: StartPlan) -> dict[Path, int]:
        """Bytes a start writes, per directory: the log and result; caches, and weights it downloads."""
        workdir = START_RESERVE_BYTES
        replays = get_launcher(plan.case.launcher).replays  # a replay fetches no weights
        if plan.source.kind == "hf" and plan.cache.policy != CachePolicy.WARM and not replays:
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

    def _finish(self, live: LiveRun, spec: LaunchSpec, started_at: str, plan: StartPlan,
                hygiene_record: Mapping[str, Any], end: StartEnd) -> BaseException | None:
        """After the stop: check nothing is left, assemble and save the result; returns the error the start
        ended with (None if it did not)."""
        server = live.server
        survived = survivors_error(server)
        if survived is not None and end.error is None:  # nothing of a start may outlive it: a survivor fails it
            end.error, end.status = survived, ExitStatus.HARNESS_ERROR
        record = {**hygiene_record, **cold_check(plan, server, hygiene_record.get("hf_hub_bytes_before"))}
        merged = merged_timeline(live)
        timeline = merged.timeline if merged is not None else server.timeline()
        assessed = Assessed(self._efficiency(live.case, timeline, record), self._pull_efficiency(timeline))
        live.result = started_result(live, spec, plan, started_at=started_at, environment=self.environment,
                                     record=record, status=end.status, error=end.error, timeline=timeline,
                                     merged=merged, assessed=assessed)
        return self._save(live.result, end.error)

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
