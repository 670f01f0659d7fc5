"""How much does the harness itself cost? Bare launch vs harness, paired.

A *bare* launch is what a user does by hand: spawn the very same vLLM command
(output to a file) and poll ``GET /health`` every 0.1 s. The *harness* launch is
``ColdStartRunner`` (line reader thread stamping every line, timeline, progress,
result file). Both start with a fresh, empty VLLM_CACHE_ROOT. Pairs are
interleaved and the order alternates, so drift on the machine hits both alike.

    .venv/bin/python benchmarks/overhead.py --pairs 3

prints each pair and the ratio of time to ready (harness / bare); target <= 1.02.
This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_coldstart.launch.base import LaunchSpec, free_port
from pytest_coldstart.launch.vllm import vllm_argv, vllm_env
from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.registry import load_registry


def bare_launch(runner: ColdStartRunner, case: Case, workdir: Path) -> float:
    """Seconds from spawn to the first 200 from /health, with no harness at all."""
    model = runner.registry.model(case.model)
    plan = runner.plan(case)  # the weights, args and env the harness's own start of *case* gets
    env = dict(plan.env)
    cache = Path(tempfile.mkdtemp(dir=workdir, prefix="bare-cache-"))
    env["VLLM_CACHE_ROOT"] = str(cache)
    port = free_port()
    spec = LaunchSpec(model_ref=plan.model_ref, served_name=model.served_name, port=port, log_path=cache / "bare.log",
                      timeout_s=900, max_model_len=model.max_model_len, engine_args=plan.engine_args, env=env,
                      python=sys.executable)
    with (cache / "bare.log").open("wb") as log:
        start = time.monotonic()
        proc = subprocess.Popen(vllm_argv(spec), env=vllm_env(spec), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5)) as client:
                while True:
                    try:
                        if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                            return time.monotonic() - start
                    except httpx.TransportError:
                        pass
                    if proc.poll() is not None:
                        raise RuntimeError(f"bare server exited with {proc.returncode}; see {cache / 'bare.log'}")
                    time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(plan.run_root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="bare/harness pairs (>= 3). Default: 3")
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--optimization", default="baseline")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="coldstart-overhead-"))
    settings = Settings(registry_dir=REPO / "benchmarks", results_dir=workdir / "results", workdir=workdir,
                        repo_dir=REPO)
    runner = ColdStartRunner(settings, load_registry(settings.registry_dir))
    case = Case(args.model, args.optimization)
    rows = []
    for i in range(args.pairs):
        order = ("bare", "harness") if i % 2 == 0 else ("harness", "bare")
        pair: dict[str, float] = {}
        for kind in order:
            if kind == "bare":
                pair[kind] = bare_launch(runner, case, workdir)
            else:
                result = runner.run(case)
                if result.total_ready_s is None:
                    print(f"pair {i + 1}: the harness start failed: {result.error}", flush=True)
                    return 2
                pair[kind] = result.total_ready_s
            print(f"pair {i + 1}: {kind:7s} ready after {pair[kind]:6.2f} s", flush=True)
        rows.append(pair)
    bare = [r["bare"] for r in rows]
    harness = [r["harness"] for r in rows]
    ratios = [r["harness"] / r["bare"] for r in rows]
    print(f"\nbare    median {statistics.median(bare):.2f} s  ({', '.join(f'{v:.2f}' for v in bare)})")
    print(f"harness median {statistics.median(harness):.2f} s  ({', '.join(f'{v:.2f}' for v in harness)})")
    print(f"ratio of medians (harness / bare): {statistics.median(harness) / statistics.median(bare):.3f}")
    print(f"median of paired ratios:           {statistics.median(ratios):.3f}  (target <= 1.02)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
