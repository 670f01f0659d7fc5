"""Adoption, for real: `coldstart init` in a fresh git repository outside this checkout, then one CPU-lane
cold start with the installed plugin's defaults only, recorded into the history, then plain `asv publish`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, git, requires_vllm

pytestmark = [pytest.mark.integration, requires_vllm]


def test_init_then_one_cold_start_records_history_and_publishes(tmp_path: Path) -> None:
    repo = tmp_path / "their-project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    env.pop("COLDSTART_S3_URI", None)
    init = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "init"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "coldstart init"], cwd=repo, env=env, check=True)
    bench = subprocess.run([sys.executable, "-m", "pytest", "-m", "coldstart", "--coldstart-model", "tiny-llama",
                            "--coldstart-optimization", "baseline", "--coldstart-budgets=", "-p", "no:cacheprovider"],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=900, start_new_session=True)
    assert bench.returncode == 0, bench.stdout[-4000:] + bench.stderr[-2000:]
    assert "asv: recorded 1 run(s)" in bench.stdout
    assert (repo / ".coldstart" / "models" / "tiny-llama" / "config.json").is_file()  # generated in their repo
    assert (repo / "results" / "asv" / "benchmarks.json").is_file()  # beside results/runs, never among them
    asv = shutil.which("asv") or str(Path(sys.executable).parent / "asv")
    site = subprocess.run([asv, "publish"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert site.returncode == 0, site.stdout[-2000:] + site.stderr[-2000:]
    assert list((repo / ".asv" / "html" / "graphs").rglob("total_ready_s.json")) or \
        list((repo / ".asv" / "html" / "graphs").rglob("*.json")), "no graphs published"
