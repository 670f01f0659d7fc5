"""Shared helpers of the fault suite: run the CLI as a user would, make results directories."""

from __future__ import annotations

import json
import shutil
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
