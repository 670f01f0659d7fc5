"""`coldstart preflight` against recorded NVML answers (a fake pynvml module; no GPU in this project)."""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path

import pytest

from pytest_coldstart.cli import main
from pytest_coldstart.measure import preflight
from tests.conftest import DATA

RECORDED = json.loads((DATA / "nvml" / "h100x8.json").read_text())


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def fake_nvml(gpus: list[dict], *, init_error: int | None = None, unsupported: tuple[str, ...] = ()) -> types.SimpleNamespace:
    """A pynvml stand-in answering from *gpus*; *unsupported* queries raise NVML_ERROR_NOT_SUPPORTED (3)."""

    def answer(key: str):
        def call(h, *args):
            if key in unsupported:
                raise NVMLError(3)
            return gpus[h][key]
        return call

    def init():
        if init_error is not None:
            raise NVMLError(init_error)

    def procs(h):
        return [types.SimpleNamespace(pid=p["pid"], usedGpuMemory=p["used"]) for p in gpus[h]["processes"]]

    return types.SimpleNamespace(
        NVMLError=NVMLError, NVML_ERROR_LIBRARY_NOT_FOUND=12, NVML_CLOCK_SM=1, NVML_MEMORY_ERROR_TYPE_UNCORRECTED=1,
        NVML_VOLATILE_ECC=0, nvmlInit=init, nvmlDeviceGetCount=lambda: len(gpus), nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlSystemGetDriverVersion=lambda: RECORDED["driver"],
        nvmlSystemGetCudaDriverVersion=lambda: RECORDED["cuda_driver_version"],
        nvmlDeviceGetName=answer("name"), nvmlDeviceGetUUID=answer("uuid"),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=gpus[h]["memory_total"], used=gpus[h]["memory_used"]),
        nvmlDeviceGetCurrPcieLinkGeneration=answer("pcie_gen"), nvmlDeviceGetMaxPcieLinkGeneration=answer("pcie_gen_max"),
        nvmlDeviceGetCurrPcieLinkWidth=answer("pcie_width"), nvmlDeviceGetMaxPcieLinkWidth=answer("pcie_width_max"),
        nvmlDeviceGetPersistenceMode=answer("persistence_mode"),
        nvmlDeviceGetClockInfo=answer("sm_clock"), nvmlDeviceGetMaxClockInfo=answer("sm_clock_max"),
        nvmlDeviceGetCurrentClocksEventReasons=answer("clock_event_reasons"),
        nvmlDeviceGetTotalEccErrors=answer("ecc_uncorrected_volatile"),
        nvmlDeviceGetComputeRunningProcesses=procs,
    )


def h100s(n: int = 8) -> list[dict]:
    return [copy.deepcopy(RECORDED["gpus"][0]) for _ in range(n)]


def statuses(report: preflight.PreflightReport, name: str) -> list[str]:
    return [c.status for c in report.checks if c.name == name]


def test_idle_h100_runner_passes_with_every_gpus_facts() -> None:
    report = preflight.run_preflight(nvml=fake_nvml(h100s()), expect_gpus=8)
    assert report.exit_code == 0, report.verdict
    assert report.verdict.startswith("PASS (exit 0)")
    assert len(report.gpus) == 8 and {g["name"] for g in report.gpus} == {"NVIDIA H100 80GB HBM3"}
    facts = report.gpus[7]
    assert facts["driver"] == "550.90.07" and facts["cuda_version"] == "12.4"
    assert (facts["pcie_gen_max"], facts["pcie_width_max"]) == (5, 16)
    assert set(statuses(report, "idle")) == {"pass"} and len(statuses(report, "idle")) == 8


@pytest.mark.parametrize(("change", "check", "reason"), [
    ({"processes": [{"pid": 4242, "used": 2 << 30}], "memory_used": 3 << 30}, "idle", "pids 4242"),
    ({"memory_used": 20 << 30}, "idle", "20480 MiB used"),
    ({"clock_event_reasons": 0x40 | 0x1}, "throttle", "hardware thermal slowdown"),
    ({"ecc_uncorrected_volatile": 2}, "ecc", "2 volatile uncorrected"),
    ({"persistence_mode": 0}, "persistence_mode", "nvidia-smi -pm 1"),
    ({"pcie_width": 8}, "pcie_link", "x8/x16"),
])
def test_each_fault_fails_with_its_reason_and_gpu(change: dict, check: str, reason: str) -> None:
    gpus = h100s()
    gpus[3].update(change)
    report = preflight.run_preflight(nvml=fake_nvml(gpus), expect_gpus=8)
    assert report.exit_code == 1
    [failed] = report.failures
    assert (failed.name, failed.gpu) == (check, 3) and reason in failed.detail
    assert f"{check} [gpu 3]" in report.verdict and reason in report.verdict


def test_a_missing_gpu_fails_and_idle_link_downtraining_does_not() -> None:
    gpus = h100s(7)
    gpus[0]["pcie_gen"] = 1  # an idle H100 trains its link down to gen 1
    report = preflight.run_preflight(nvml=fake_nvml(gpus), expect_gpus=8)
    assert [c.name for c in report.failures] == ["gpu_count"] and "7 GPU(s), 8 expected" in report.verdict
    assert statuses(report, "pcie_link")[0] == "pass"


def test_unsupported_queries_are_skipped_not_failed() -> None:
    report = preflight.run_preflight(nvml=fake_nvml(h100s(1), unsupported=("ecc_uncorrected_volatile",
                                                                           "clock_event_reasons")))
    assert report.exit_code == 0 and statuses(report, "ecc") == ["skip"] and statuses(report, "throttle") == ["skip"]



def test_nvml_errors_mean_cannot_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake_nvml([], init_error=12))
    report = preflight.run_preflight()
    assert report.exit_code == 2 and "no NVIDIA driver" in report.verdict and "--gpus 0" in report.verdict
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake_nvml([], init_error=9))
    assert "NVML did not initialise" in preflight.run_preflight().verdict
    assert preflight.run_preflight(expect_gpus=0).exit_code == 0  # the CPU lane checks no GPU


def test_this_machine_without_a_gpu_gives_a_clear_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """The real NVML path on this GPU-less machine: no driver library -> exit 2 and what to run instead."""
    code = main(["preflight"])
    out = capsys.readouterr().out
    assert code == 2 and "CANNOT CHECK (exit 2)" in out
    assert "--gpus 0" in " ".join(out.split()) or "nvidia-ml-py is not installed" in out
    assert main(["preflight", "--gpus", "0", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["exit_code"] == 0 and record["gpus"] == [] and record["checks"][0]["name"] == "disk"


def test_disk_and_cold_cache_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub" / "models--meta-llama--Meta-Llama-3-8B-Instruct").mkdir(parents=True)
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"x" * 8192)
    report = preflight.run_preflight(expect_gpus=0, disk_path=tmp_path, need_bytes=10**18,
                                     hf_repos=["meta-llama/Meta-Llama-3-8B-Instruct", "org/absent"],
                                     local_weights=[weights], resident=lambda p: p.stat().st_size)
    assert [c.name for c in report.failures] == ["disk"] and "needed" in report.failures[0].detail
    assert statuses(report, "hf_cache_cold") == ["warn", "pass"]
    assert statuses(report, "page_cache_cold") == ["warn"]


def test_results_carry_every_gpus_facts_and_the_preflight() -> None:
    from pytest_coldstart.measure.environment import gpu_info

    info = gpu_info(fake_nvml(h100s()))
    assert info["gpu_source"] == "nvml" and info["gpu_count"] == 8 and info["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert [g["index"] for g in info["gpus"]] == list(range(8)) and info["gpus"][5]["pcie_width_max"] == 16
    assert info["preflight"]["exit_code"] == 0 and info["cuda_version"] == "12.4"


def test_host_to_gpu_probe_without_cuda_cannot_probe(capsys: pytest.CaptureFixture[str]) -> None:
    """The probe is written for a GPU host and has never run on one; here torch has no CUDA."""
    assert main(["preflight", "--probe-h2d"]) == 2
    assert "cannot probe (exit 2)" in capsys.readouterr().out
