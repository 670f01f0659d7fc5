"""``make gpu-check``: on this CPU machine it says "no GPU" cleanly and exits 2; its sections report, never raise."""

from __future__ import annotations

import json
import subprocess
import sys

from pytest_coldstart.logs import vllm_source
from pytest_coldstart.measure import gpu_check
from tests.conftest import REPO


def test_make_gpu_check_without_a_gpu_says_so_and_exits_2(tmp_path):
    out_file = tmp_path / "gpu-check.json"
    out = subprocess.run(["make", "-s", "gpu-check", f"GPU_CHECK_PYTHON={sys.executable}",
                          f"GPU_CHECK_OUT={out_file}"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode != 0  # make reports the command's 2 as its own failure
    assert "coldstart gpu-check: no GPU on this machine" in out.stderr and "Traceback" not in out.stderr
    report = json.loads(out_file.read_text())
    assert report["verdict"] == "no_gpu" and report["exit_code"] == 2 and report["gpu"]["present"] is False
    assert "sections" not in report  # nothing measured is invented


def test_the_cli_form_exits_2_without_a_gpu(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "gpu-check", "--out", str(tmp_path / "r.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 2 and "no GPU" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "gpu-check", "--h2d-gib", "0"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "--h2d-gib: Could not parse value: '0'" in bad.stderr
    big = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "gpu-check", "--h2d-gib", "65"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert big.returncode == 2 and "--h2d-gib must be in (0, 64]" in big.stderr


def test_with_a_gpu_each_section_reports_and_a_failed_one_makes_it_exit_2(tmp_path, monkeypatch):
    # What a GPU host would run, on this machine: the host->GPU probe cannot run (CPU torch) and says why.
    tree = tmp_path / "vllm"
    (tree / "v1").mkdir(parents=True)
    (tree / "__init__.py").write_text("")
    monkeypatch.setattr(vllm_source, "installed_vllm_dir", lambda: None)  # no vLLM: the hook section is skipped
    code = gpu_check.run_gpu_check(tmp_path / "r.json", workdir=tmp_path / "w", vllm_source=tree, repo=REPO,
                                   presence=lambda: (True, "pretend: one GPU"))
    report = json.loads((tmp_path / "r.json").read_text())
    sections = report["sections"]
    assert code == 2 and report["verdict"] == "failed"
    assert sections["host_to_gpu"]["status"] == "error" and "not probed" in sections["host_to_gpu"]["detail"]
    assert sections["environment"]["status"] == "ok" and "cpu_cores" in sections["environment"]["environment"]
    assert sections["check_vllm"]["status"] == "failed"  # an empty tree lacks every wording
    assert sections["check_vllm"]["report"]["summary"]["markers_missing"]
    assert sections["probe_hooks"]["status"] == "skipped"
    assert sections["preflight"]["status"] == "skipped"  # no NVML library here
    assert set(report["failed"]) == {"host_to_gpu", "check_vllm"}
