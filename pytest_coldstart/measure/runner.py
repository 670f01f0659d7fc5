"""One cold start end to end: model, cache policy, launch, ready, TTFT, stop, result.

The pure core the pytest plugin and the CLI call; it never imports pytest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.optimize import tinymodel
from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.efficiency import LoadEfficiency
from pytest_coldstart.measure.environment import collect_environment
from pytest_coldstart.model.errors import ConfigError, LaunchError, ReadinessTimeout, ServerExitedError
from pytest_coldstart.measure.floors import FloorResolver
from pytest_coldstart.launch.registry import get_launcher
from pytest_coldstart.launch.base import LaunchSpec, Server, check_port_free, free_port
from pytest_coldstart.launch.process import session_members
from pytest_coldstart.model.redact import redact_env
from pytest_coldstart.model.registry import ModelSpec, OptimizationSpec, Registry, split_source
from pytest_coldstart.model.result import RunResult, check_writable, write_result
from pytest_coldstart.launch.ttft import TTFTSample

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


@dataclass(frozen=True)
class Case:
    """One cold start to measure."""

    model: str
    optimization: str
    launcher: str = "vllm"
    repeat_index: int = 0

    @property
    def id(self) -> str:
        return f"{self.model}-{self.optimization}-{self.launcher}-r{self.repeat_index}"


@dataclass
class LiveRun:
    """What ``ColdStartRunner.launch`` yields: the ready server, then its result."""

    case: Case
    server: Server
    ttft: TTFTSample | None = None
    result: RunResult | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url


@dataclass
class _Prepared:
    model_ref: str
    engine_args: tuple[str, ...]
    env: dict[str, str]
    cache: dict[str, Any] = field(default_factory=dict)
    cleanup: Path | None = None
    hygiene: Any = None  # hygiene.HygienePlan, applied right before the measured start


class ColdStartRunner:
    """Measures cold starts of the registry's models under its optimizations."""

    def __init__(self, settings: Settings, registry: Registry, *, clock: Clock | None = None,
                 progress: ProgressFn | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.clock = clock or SystemClock()
        self.progress = progress
        self._environment: dict[str, Any] | None = None
        #: Every result this runner saved, failed ones included, in order.
        self.results: list[RunResult] = []
        #: (model, optimization) -> how its s3:// weights were made ready (s3source.SourceReport).
        self.source_reports: dict[tuple[str, str], dict[str, Any]] = {}
        self._floors: FloorResolver | None = None

    @property
    def environment(self) -> dict[str, Any]:
        if self._environment is None:
            self._environment = collect_environment(self.settings.repo_dir)
        return self._environment

    def _say(self, case: Case, note: str, elapsed_s: float = 0.0) -> None:
        if self.progress is not None:
            self.progress(case.id, note, elapsed_s)

    def resolve_model(self, model: ModelSpec, optimization: str) -> tuple[str, dict[str, str]]:
        """The ``--model`` argument for vLLM, generating the tiny model if needed."""
        kind, ref = split_source(model.source_for(optimization))
        if kind == "generated":
            path = (self.settings.workdir / "models" / ref).resolve()
            if not tinymodel.is_tiny_model(path):
                tinymodel.make_tiny_model(path)
            # Local checkpoint: nothing to fetch, so never wait on a hub that isn't there.
            return str(path), {"HF_HUB_OFFLINE": "1"}
        if kind == "local":
            path = Path(ref).expanduser()
            if not (path / "config.json").is_file():
                raise ConfigError(f"model directory missing for {model.name}: {path} has no config.json; "
                                  f"fix `source` in {self.settings.registry_dir / 'models.toml'}")
            return str(path.resolve()), {"HF_HUB_OFFLINE": "1"}
        if kind == "s3":
            from pytest_coldstart.optimize import s3source

            return s3source.resolve_for_runner(self, model, optimization, ref)
        return ref, {}

    def _prepare(self, case: Case) -> _Prepared:
        model = self.registry.model(case.model)
        opt = self.registry.optimization(case.optimization)
        model_ref, env = self.resolve_model(model, case.optimization)
        env.update(dict(model.env))
        env.update(dict(opt.env))
        args = model.engine_args + opt.engine_args
        prepared = _Prepared(model_ref, args, env)
        from pytest_coldstart.optimize import compile_cache
        from pytest_coldstart.optimize import hygiene

        run_root = (self.settings.workdir / "cache" / "run" / uuid.uuid4().hex[:12]).resolve()
        run_root.mkdir(parents=True)
        prepared.cleanup = run_root
        prepared.cache = {"policy": opt.cache}
        if (model.name, opt.name) in self.source_reports:
            prepared.cache["weights_source"] = self.source_reports[(model.name, opt.name)]
        if opt.cache == "cold":
            root = run_root / "vllm_cache"
            prepared.cache["state"] = "cold"
        else:
            root = self._compile_cache_dir(model, opt, model_ref, args, case.launcher)
            store, why = compile_cache.choose_store(model.compile_cache_uri)
            prepared.cache.update(store=store, store_reason=why)
            if store == "s3":  # the measured start gets what S3 returns, in a fresh root
                root = run_root / "vllm_cache"
                key = compile_cache.case_key(self, model, opt, model_ref, launcher=case.launcher)
                prepared.cache.update(uri=model.compile_cache_uri, key=dataclasses.asdict(key))
        local_dir = Path(model_ref) if model_ref.startswith("/") and Path(model_ref).is_dir() else None
        prepared.hygiene = hygiene.plan(opt.cache, compile_root=root, run_root=run_root, local_model_dir=local_dir,
                                        assets_dir=hygiene.assets_dir_for(self.settings.workdir, model.name, opt.name))
        env.update(prepared.hygiene.env)
        prepared.cache["vllm_cache_root"] = str(root)
        return prepared

    def _compile_cache_dir(self, model: ModelSpec, opt: OptimizationSpec, model_ref: str,
                           args: tuple[str, ...], launcher: str = "vllm") -> Path:
        # vLLM hashes config + code into the cache path itself; our key only
        # makes sure a cache from another vLLM/torch, other args or another
        # launcher (Ray's engine config differs) is never reused.
        key_inputs = {"model": model.name, "model_ref": model_ref, "args": list(args), "launcher": launcher,
                      "vllm": self.environment.get("vllm"), "torch": self.environment.get("torch"),
                      "tiny_revision": tinymodel.TINY_MODEL_REVISION}
        key = hashlib.sha256(json.dumps(key_inputs, sort_keys=True).encode()).hexdigest()[:12]
        return self.settings.workdir / "cache" / "compile" / f"{model.name}-{opt.name}-{key}"

    def _spec(self, case: Case, prepared: _Prepared, log_name: str) -> LaunchSpec:
        model = self.registry.model(case.model)
        port = self.settings.port
        if port:
            check_port_free("127.0.0.1", port)
        else:
            port = free_port()
        return LaunchSpec(model_ref=prepared.model_ref, served_name=model.served_name, port=port,
                          log_path=self.settings.results_dir / "logs" / log_name, timeout_s=self.settings.timeout_s,
                          tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
                          engine_args=prepared.engine_args, env=prepared.env, python=self.settings.python,
                          launcher_options=dict(self.settings.launcher_options))

    def _populate_compile_cache(self, case: Case, prepared: _Prepared) -> None:
        """Fill the compile cache with one unmeasured start, unless already complete.

        A cache is used only if ``.complete`` exists; an interrupted populate
        leaves none, so it is wiped and redone rather than half-used.
        """
        root = Path(prepared.env["VLLM_CACHE_ROOT"])
        marker = root / ".complete"
        if marker.is_file():
            prepared.cache.update(state="warm", populated=json.loads(marker.read_text()))
            return
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        self._say(case, "populating the torch.compile cache (unmeasured start)")
        spec = self._spec(case, prepared, f"{self._stamp()}_{case.id}_populate.log")
        server = get_launcher(case.launcher).start(spec, self.clock)
        try:
            server.wait_ready(lambda phase, t: self._say(case, f"populate: {phase}", t))
            if server.starts_on_first_request:  # Ray scale-from-zero: compiling happens on the first request
                server.first_token(spec.served_name, timeout_s=self.settings.timeout_s,
                                   progress=lambda phase, t: self._say(case, f"populate: {phase}", t))
        except LaunchError as exc:
            raise LaunchError(f"populating the torch.compile cache failed: {exc.summary}", last_phase=exc.last_phase,
                              elapsed_s=exc.elapsed_s, log_tail=exc.log_tail, log_path=exc.log_path,
                              exit_code=exc.exit_code) from None
        finally:
            server.stop()
        meta = {"created_at": self.clock.wall().isoformat(), "vllm": self.environment.get("vllm"),
                "torch": self.environment.get("torch"), "populate_log": str(spec.log_path)}
        tmp = root / ".complete.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(marker)
        prepared.cache.update(state="warm", populated=meta)

    def _stamp(self) -> str:
        return self.clock.wall().strftime("%Y%m%dT%H%M%S")

    @contextmanager
    def launch(self, case: Case) -> Iterator[LiveRun]:
        """Start the server cold, wait for /health, measure TTFT, yield it live.

        On exit the server is stopped (TERM, grace, KILL), the result is written
        to ``results/runs/`` (also for a failed start) and set on the LiveRun.
        """
        get_launcher(case.launcher)
        check_writable(self.settings.results_dir)
        prepared = self._prepare(case)
        try:
            if prepared.cache["policy"] != "cold":
                if prepared.cache.get("store") == "s3":
                    from pytest_coldstart.optimize.compile_cache import fetch_for_run

                    fetch_for_run(self, case, prepared)
                else:
                    self._populate_compile_cache(case, prepared)
            from pytest_coldstart.optimize.hygiene import apply as apply_hygiene

            prepared.cache.update(apply_hygiene(prepared.hygiene).to_record())
            started_at = self.clock.wall().isoformat()
            spec = self._spec(case, prepared, f"{self._stamp()}_{case.id}.log")
            server = get_launcher(case.launcher).start(spec, self.clock)
            live = LiveRun(case, server)
            error: BaseException | None = None
            status = "ok"
            try:
                server.wait_ready(lambda phase, t: self._say(case, phase, t))
                self._say(case, "ready; measuring time to first token", server.ready_s or 0.0)
                live.ttft = server.first_token(spec.served_name, timeout_s=min(300.0, self.settings.timeout_s),
                                               progress=lambda phase, t: self._say(case, phase, t))
                yield live
            except ServerExitedError as exc:
                error, status = exc, "server_exited"
            except ReadinessTimeout as exc:
                error, status = exc, "timeout"
            except LaunchError as exc:
                error, status = exc, "error"
            except BaseException as exc:
                error, status = exc, "error"
            finally:
                server.stop()
                leftovers = session_members(server.process.pid)
            if leftovers and error is None:
                status = "error"
                error = LaunchError(f"{len(leftovers)} server process(es) survived stop: "
                                    f"{[p.pid for p in leftovers]}")
            live.result = self._result(case, spec, server, live.ttft, started_at, prepared, status, error)
            write_result(self.settings.results_dir, live.result)
            self.results.append(live.result)
            if error is not None:
                if isinstance(error, Exception) and not isinstance(error, LaunchError):
                    raise LaunchError(f"{case.id}: {type(error).__name__}: {error}",
                                      last_phase=live.result.last_phase, log_tail=server.process.tail(50),
                                      log_path=str(spec.log_path)) from error
                raise error
        finally:
            if prepared.cleanup is not None:
                shutil.rmtree(prepared.cleanup, ignore_errors=True)

    def run(self, case: Case) -> RunResult:
        """Measure one cold start and return its (already saved) result."""
        with self.launch(case) as live:
            pass
        assert live.result is not None
        return live.result

    def _result(self, case: Case, spec: LaunchSpec, server: Server, ttft: TTFTSample | None, started_at: str,
                prepared: _Prepared, status: str, error: BaseException | None) -> RunResult:
        timeline = server.timeline()
        return RunResult(
            model=case.model, optimization=case.optimization, launcher=case.launcher,
            cache_state=str(prepared.cache.get("state")), started_at=started_at, phases=timeline.phases,
            reported=dict(timeline.reported), total_ready_s=timeline.total_ready_s,
            ttft_s=ttft.ttft_s if ttft else None, first_response_s=ttft.first_response_s if ttft else None,
            unaccounted_s=timeline.unaccounted_s, environment=self.environment, exit_status=status,
            log_path=str(spec.log_path), repeat_index=case.repeat_index, server_exit_code=server.exit_code,
            error=None if error is None else str(error), last_phase=timeline.last_phase_reached,
            server_argv=tuple(server.process.argv), env_overrides=redact_env(spec.env),
            cache={k: v for k, v in prepared.cache.items() if k != "state"},
            efficiency=self._efficiency(case, timeline),
        )

    def _efficiency(self, case: Case, timeline: Any) -> LoadEfficiency:
        # Runs after stop(): the disk probe (once per runner) never competes with a measured start for I/O.
        if self._floors is None:
            self._floors = FloorResolver(self.settings.workdir / "probe", clock=self.clock)
        return self._floors.assess_run(self.registry.model(case.model), case.optimization, timeline.phases,
                                       timeline.reported)
