"""Real SIGINT / SIGTERM to a pytest process running a cold start through the plugin, as a CI cancel
sends them (GitHub: SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that). The server is the small fake
(it spawns a setsid() child and a double-forked grandchild, and can ignore SIGTERM)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.faults.conftest import alive, default_sigint, fake_registry, pids_in

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


def _command(tmp_path: Path, optimization: str, *extra: str) -> tuple[list[str], dict[str, str]]:
    suite = tmp_path / "suite"
    suite.mkdir(parents=True)
    (suite / "conftest.py").write_text(SUITE_CONFTEST)
    (suite / "test_cancel.py").write_text(SUITE_TEST)
    registry = fake_registry(tmp_path / "registry")
    pid_file = tmp_path / "pids"
    env = {**os.environ, "FAKE_PID_FILE": str(pid_file), "PYTHONPATH": f"{REPO}{os.pathsep}"
           + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", str(suite), "-m", "coldstart", "-p", "no:cacheprovider", "-q",
           f"--rootdir={suite}", "--coldstart-model=fake", f"--coldstart-optimization={optimization}",
           f"--coldstart-registry={registry}", f"--coldstart-results={tmp_path / 'results'}",
           f"--coldstart-workdir={tmp_path / 'work'}", "--coldstart-timeout=120", *extra]
    return cmd, env


def _start(tmp_path: Path, optimization: str) -> tuple[subprocess.Popen[str], Path]:
    cmd, env = _command(tmp_path, optimization)
    suite, pid_file = tmp_path / "suite", tmp_path / "pids"
    proc = subprocess.Popen(cmd, cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_sigint)
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


def test_the_pytest_gate_exits_2_when_it_cannot_decide(tmp_path: Path) -> None:
    """--coldstart-compare-to a base whose starts were all interrupted: no verdict, exit 2 (not 1)."""
    base = tmp_path / "base"
    (base / "runs").mkdir(parents=True)
    cmd, env = _command(tmp_path / "first", "mode_ok")
    first = subprocess.run(cmd, cwd=tmp_path / "first" / "suite", env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stdout[-3000:]
    (ok,) = (tmp_path / "first" / "results" / "runs").glob("*.json")
    data = json.loads(ok.read_text())
    data.update(exit_status="interrupted", error="interrupted (KeyboardInterrupt)", total_ready_s=None)
    (base / "runs" / ok.name).write_text(json.dumps(data))
    cmd, env = _command(tmp_path / "second", "mode_ok", f"--coldstart-compare-to={base}")
    gate = subprocess.run(cmd, cwd=tmp_path / "second" / "suite", env=env, capture_output=True, text=True,
                          timeout=120)
    assert gate.returncode == 2, gate.stdout[-3000:]
    assert "did not complete for a reason outside the server" in " ".join(gate.stdout.split())


def test_pytest_timeout_is_set_from_the_case_and_never_pre_empts_the_harness(tmp_path: Path) -> None:
    """pyproject's 900 s would fire before a populate start plus a measured start of 600 s each."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(SUITE_CONFTEST)
    (suite / "test_marker.py").write_text(
        "import pytest\n\n@pytest.mark.coldstart(launcher='fake')\n"
        "def test_m(coldstart, request):\n    print('TIMEOUT_S', request.node.get_closest_marker('timeout').args[0])\n")
    registry = fake_registry(tmp_path / "registry")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}" + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", "-q", "-s",
                          f"--rootdir={suite}", "-o", "timeout=900", "--coldstart-model=fakehub,fake",
                          "--coldstart-optimization=compile_download,mode_ok", f"--coldstart-registry={registry}",
                          "--coldstart-timeout=600", "-k", "fakehub-compile_download or fake-mode_ok"],
                         cwd=suite, env=env, capture_output=True, text=True, timeout=120)
    values = sorted(float(v) for v in re.findall(r"TIMEOUT_S ([0-9.]+)", out.stdout))
    assert values == [600 + 180, 2 * 600 + 180], out.stdout[-3000:]
