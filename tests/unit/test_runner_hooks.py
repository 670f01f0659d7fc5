"""The self-hosted runner hooks, run for real against a fake nvidia-smi / coldstart on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HOOKS = REPO / "runner"


@pytest.mark.parametrize("script", ["job-started.sh", "job-completed.sh", "jit-runner.sh"])
def test_scripts_parse(script: str) -> None:
    assert subprocess.run(["bash", "-n", str(HOOKS / script)], capture_output=True).returncode == 0
    assert os.access(HOOKS / script, os.X_OK)


def _fake_bin(tmp_path: Path, pid: int, preflight_rc: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\nkill -0 {pid} 2>/dev/null && echo {pid}\nexit 0\n")
    (bin_dir / "coldstart").write_text(f"#!/bin/sh\necho \"preflight $*\"\nexit {preflight_rc}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(("hook", "preflight_rc", "expected_rc"), [
    ("job-started.sh", 0, 0), ("job-started.sh", 1, 1), ("job-completed.sh", 1, 0)])
def test_hook_kills_stray_gpu_process_cleans_workspace_and_gates_on_preflight(
        tmp_path: Path, hook: str, preflight_rc: int, expected_rc: int) -> None:
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        ws = tmp_path / "ws"
        for d in ("runs-base", "runs-head/runs", "head", "keep"):
            (ws / d).mkdir(parents=True)
        env = {**os.environ, "PATH": f"{_fake_bin(tmp_path, stray.pid, preflight_rc)}:{os.environ['PATH']}",
               "GITHUB_WORKSPACE": str(ws), "COLDSTART_KILL_GRACE_S": "0.5"}
        out = subprocess.run(["bash", str(HOOKS / hook)], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == expected_rc, out.stdout + out.stderr
        assert stray.wait(timeout=10) is not None, "the stray GPU process survived"
        assert sorted(p.name for p in ws.iterdir()) == ["keep"]
        if hook == "job-started.sh":
            assert "preflight --gpus 8" in out.stdout
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
