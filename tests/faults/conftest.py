"""Shared helpers of the fault suite: run the CLI as a user would, make results directories."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import DATA, REPO

CPU_LANE = DATA / "results" / "cpu-lane"


@dataclass(frozen=True)
class Cli:
    returncode: int
    stdout: str
    stderr: str


def coldstart(*args: str, env: dict[str, str] | None = None, shell_pipe: str | None = None) -> Cli:
    """``coldstart ARGS`` in a subprocess (``python -m pytest_coldstart.cli``), from the repository root."""
    cmd = [sys.executable, "-m", "pytest_coldstart.cli", *args]
    if shell_pipe:  # e.g. "| head -1": the command's own status through `set -o pipefail`
        line = " ".join(f"'{a}'" for a in cmd)
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; {line} {shell_pipe}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    else:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return Cli(proc.returncode, proc.stdout, proc.stderr)


def baseline_runs(dest: Path, status: str | None = None, error: str | None = None, edit: dict | None = None) -> Path:
    """A results dir with the CPU lane's baseline runs, each optionally rewritten (exit_status, error, fields)."""
    runs = dest / "runs"
    runs.mkdir(parents=True)
    for src in sorted((CPU_LANE / "runs").glob("*_baseline_*.json")):
        data = json.loads(src.read_text())
        if data["exit_status"] != "ok":
            continue  # the CPU lane's data has one failed start; each side here is all ok or all `status`
        if status is not None:
            data["exit_status"] = status
            data["error"] = error
            if status != "ok":
                data["total_ready_s"] = data["ttft_s"] = data["first_response_s"] = data["unaccounted_s"] = None
                data["phases"] = []
        data.update(edit or {})
        (runs / src.name).write_text(json.dumps(data))
    return dest


def copy_cpu_lane(dest: Path) -> Path:
    shutil.copytree(CPU_LANE, dest)
    return dest

TINY = REPO / ".coldstart" / "models" / "tiny-llama"
FAKE_MODES = ("ok", "download", "leaky", "trickle", "unhealthy", "setsid", "ignore-term", "chatty", "chatty-hang", "hang",
              "hang-ignore-term", "daemonize", "flood", "secrets")


def fake_registry(dest: Path) -> Path:
    """A registry with model `fake` (the tiny model's files, served by tests/faults/fake_server.py) and one
    optimization per fake-server mode (`mode_trickle`, ...)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "models.toml").write_text(
        '[models.fake]\ndescription = "fault-injection server"\n'
        f'source = "local:{TINY}"\nserved_name = "fake"\nweight_bytes = 1685112\n'
        f'optimizations = [{", ".join(repr("mode_" + m.replace("-", "_")).replace(chr(39), chr(34)) for m in FAKE_MODES)}]\n')
    opts = "".join(f'[optimizations.mode_{m.replace("-", "_")}]\ncache = "cold"\nenv = {{ FAKE_MODE = "{m}" }}\n\n'
                   for m in FAKE_MODES)
    # A hub model whose weights the fake "downloads", under a compile cache (one unmeasured populate start).
    (dest / "models.toml").write_text((dest / "models.toml").read_text() + '\n[models.fakehub]\nsource = "hf:org/fake"\n'
                                      'served_name = "fake"\noptimizations = ["compile_download"]\n')
    opts += '[optimizations.compile_download]\ncache = "compile"\nenv = { FAKE_MODE = "download" }\n'

    (dest / "optimizations.toml").write_text(opts)
    return dest


def alive(pid: int) -> bool:
    """True if *pid* runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_in(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def default_sigint() -> None:
    """``preexec_fn`` for a pytest started to be cancelled like CI: SIGINT back to its default.

    A shell without job control starts background commands with SIGINT ignored (POSIX), and an
    ignored SIGINT is inherited through exec: Python then never raises KeyboardInterrupt, and the
    cancel tests would measure the SIGTERM path only. GitHub's runner delivers SIGINT to a step
    whose SIGINT is at its default; this makes the test's child the same wherever the suite runs.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
