"""Real SIGINT / SIGTERM to a pytest process running a cold start through the plugin, as a CI cancel
sends them (GitHub: SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that). The server is the small fake
(it spawns a setsid() child and a double-forked grandchild, and can ignore SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.faults.conftest import alive, fake_registry, pids_in

SUITE_CONFTEST = '''
from pytest_coldstart.launch import registry
registry.LAUNCHERS["fake"] = "tests.faults.fake_launcher:FakeLauncher"
'''
SUITE_TEST = '''
import pytest

@pytest.mark.coldstart(launcher="fake")
def test_start(coldstart):
    coldstart.run(check_budgets=False)
'''
#: GitHub Actions' cancel: SIGTERM this long after SIGINT, SIGKILL 2.5 s after that.
GITHUB_TERM_AFTER_S = 7.5
GITHUB_KILL_AFTER_S = 2.5


def _start(tmp_path: Path, optimization: str) -> tuple[subprocess.Popen[str], Path]:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(SUITE_CONFTEST)
    (suite / "test_cancel.py").write_text(SUITE_TEST)
    registry = fake_registry(tmp_path / "registry")
    pid_file = tmp_path / "pids"
    env = {**os.environ, "FAKE_PID_FILE": str(pid_file), "PYTHONPATH": f"{REPO}{os.pathsep}"
           + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", str(suite), "-m", "coldstart", "-p", "no:cacheprovider", "-q",
           f"--rootdir={suite}", "--model=fake", f"--optimization={optimization}",
           f"--coldstart-registry={registry}", f"--coldstart-results={tmp_path / 'results'}",
           f"--coldstart-workdir={tmp_path / 'work'}", "--coldstart-timeout=120"]
    proc = subprocess.Popen(cmd, cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while len(pids_in(pid_file)) < 4:  # the server and its three escapees are up
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the start never got going: {proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    time.sleep(0.5)
    return proc, pid_file


def _saved(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "results" / "runs").glob("*.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("optimization", ["mode_hang", "mode_hang_ignore_term"])
def test_a_github_cancel_stops_everything_before_the_kill(tmp_path: Path, optimization: str) -> None:
    """SIGINT, then SIGTERM 7.5 s later: pytest is gone, with the result saved, before the SIGKILL would come."""
    proc, pid_file = _start(tmp_path, optimization)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=GITHUB_TERM_AFTER_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the second signal escalates to KILL of the tree
        try:
            proc.wait(timeout=GITHUB_KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"pytest outlived GitHub's cancel window: {proc.communicate()[0][-3000:]}")
    output = proc.communicate()[0]
    assert time.monotonic() - t0 < GITHUB_TERM_AFTER_S + GITHUB_KILL_AFTER_S
    assert proc.returncode == 2, output[-3000:]  # pytest's "interrupted", never 1 ("regression")
    pids = pids_in(pid_file)
    assert len(pids) == 4 and not [p for p in pids if alive(p)], output[-3000:]
    result = _saved(tmp_path)
    assert result["exit_status"] == "interrupted" and result["error"].startswith("interrupted"), result["error"]


def test_sigterm_alone_stops_the_server_and_saves_the_attempt(tmp_path: Path) -> None:
    proc, pid_file = _start(tmp_path, "mode_hang")
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=GITHUB_TERM_AFTER_S + GITHUB_KILL_AFTER_S)[0]
    assert proc.returncode == 2, output[-3000:]
    assert not [p for p in pids_in(pid_file) if alive(p)]
    assert _saved(tmp_path)["exit_status"] == "interrupted"
