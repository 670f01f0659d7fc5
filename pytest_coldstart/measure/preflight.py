"""Pre-flight of a GPU runner, from NVML (``nvidia-ml-py``): is this machine fit to measure a cold start?

Checks, each pass / fail (with the reason) / warn / skip:

* the expected number of GPUs is present (NVML device count);
* every GPU is idle: no compute process, memory used below a threshold;
* not throttled: no hardware slowdown, thermal or power-brake clock-event reason;
* ECC clean: no volatile uncorrected ECC errors;
* persistence mode on (a driver that unloads between jobs adds seconds to the first CUDA call);
* clocks: the SM clock's maximum is reported (and the current one recorded);
* PCIe link: current generation and width equal the maximum (a link trained down halves host->GPU);
* free disk where the weights and caches go, against what the model needs;
* caches the optimization expects cold are cold: the model's HF hub cache entry is absent, local
  weights are not resident in the page cache (warnings: the harness itself gives every cold start a
  fresh HF_HUB_CACHE and evicts local weights; these show what a start outside it would find).

Verdict, the project's exit codes: 0 every check passed; 1 a check failed (the reasons are listed);
2 the checks could not be made (NVML is not there: no NVIDIA driver, or ``nvidia-ml-py`` missing).

NVML is passed in as a module object (``pynvml``), so the logic is tested against recorded NVML
answers without a GPU. It has not run on a GPU machine in this project yet (docs: How-to > An 8xH100 runner).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
#: A GPU with more memory in use than this is not idle (the driver's own reservation is ~0.5 GiB on H100).
DEFAULT_MAX_MEMORY_USED_MIB = 1024
#: Page-cache residency above which local weights are not cold.
MAX_RESIDENT_FRACTION = 0.05

# Clock-event (throttle) reasons that slow a measured start down; NVML's bit values (nvml.h,
# nvmlClocksEventReason*): HwSlowdown 0x8, SwThermalSlowdown 0x20, HwThermalSlowdown 0x40,
# HwPowerBrakeSlowdown 0x80. GpuIdle (0x1) and SwPowerCap (0x4) are normal on an idle GPU.
THROTTLE_REASONS = {0x8: "hardware slowdown", 0x20: "software thermal slowdown", 0x40: "hardware thermal slowdown",
                    0x80: "hardware power brake"}
SW_POWER_CAP = 0x4


class NvmlUnavailable(Exception):
    """NVML cannot be used here; the message says why (and what to run instead)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    gpu: int | None = None


@dataclass(frozen=True)
class PreflightReport:
    checks: tuple[Check, ...]
    gpus: tuple[dict[str, Any], ...] = ()
    #: Why nothing could be checked (exit 2), else "".
    unavailable: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def exit_code(self) -> int:
        if self.unavailable:
            return 2
        return 1 if self.failures else 0

    @property
    def verdict(self) -> str:
        if self.unavailable:
            return f"CANNOT CHECK (exit 2): {self.unavailable}"
        if self.failures:
            return f"FAIL (exit 1): {len(self.failures)} check(s) failed: " + "; ".join(
                f"{c.name}{'' if c.gpu is None else f' [gpu {c.gpu}]'}: {c.detail}" for c in self.failures)
        return f"PASS (exit 0): {len(self.checks)} check(s), {len(self.gpus)} GPU(s)"

    def to_record(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "exit_code": self.exit_code, "unavailable": self.unavailable or None,
                "settings": self.settings, "checks": [asdict(c) for c in self.checks], "gpus": list(self.gpus)}


def load_nvml() -> Any:
    """``pynvml`` initialised; raises ``NvmlUnavailable`` with the reason (never an NVML exception)."""
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed (pip install 'pytest-coldstart[gpu]' or nvidia-ml-py)") \
            from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        if getattr(exc, "value", None) == getattr(pynvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12):
            raise NvmlUnavailable("NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on this machine; "
                                  "on the CPU lane run `coldstart preflight --gpus 0`") from None
        raise NvmlUnavailable(f"NVML did not initialise: {exc}") from None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _try(nvml: Any, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``'s NVML answer, or None where the device does not support the query."""
    try:
        return call(*args)
    except nvml.NVMLError:
        return None


def _cuda_version(nvml: Any) -> str | None:
    raw = _try(nvml, nvml.nvmlSystemGetCudaDriverVersion)
    return None if raw is None else f"{raw // 1000}.{raw % 1000 // 10}"


def gpu_facts(nvml: Any) -> list[dict[str, Any]]:
    """Every GPU's facts (name, memory, PCIe, clocks, processes ...) as plain values."""
    driver = _try(nvml, nvml.nvmlSystemGetDriverVersion)
    cuda = _cuda_version(nvml)
    facts = []
    for index in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(h)
        procs = _try(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, h) or []
        reasons_call = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        facts.append({
            "index": index,
            "name": _text(nvml.nvmlDeviceGetName(h)),
            "uuid": _text(_try(nvml, nvml.nvmlDeviceGetUUID, h) or ""),
            "memory_total_bytes": int(memory.total),
            "memory_used_bytes": int(memory.used),
            "driver": _text(driver) if driver is not None else None,
            "cuda_version": cuda,
            "pcie_gen": _try(nvml, nvml.nvmlDeviceGetCurrPcieLinkGeneration, h),
            "pcie_gen_max": _try(nvml, nvml.nvmlDeviceGetMaxPcieLinkGeneration, h),
            "pcie_width": _try(nvml, nvml.nvmlDeviceGetCurrPcieLinkWidth, h),
            "pcie_width_max": _try(nvml, nvml.nvmlDeviceGetMaxPcieLinkWidth, h),
            "persistence_mode": _try(nvml, nvml.nvmlDeviceGetPersistenceMode, h),
            "sm_clock_mhz": _try(nvml, nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM),
            "sm_clock_max_mhz": _try(nvml, nvml.nvmlDeviceGetMaxClockInfo, h, nvml.NVML_CLOCK_SM),
            "clock_event_reasons": _try(nvml, reasons_call, h),
            "ecc_uncorrected_volatile": _try(nvml, nvml.nvmlDeviceGetTotalEccErrors, h,
                                             nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC),
            "compute_processes": [{"pid": int(p.pid), "used_bytes": getattr(p, "usedGpuMemory", None)}
                                  for p in procs],
        })
    return facts


def _gpu_checks(gpus: Sequence[dict[str, Any]], expect_gpus: int | None, max_memory_used_mib: float) -> list[Check]:
    checks = []
    count = len(gpus)
    if expect_gpus is None:
        checks.append(Check("gpu_count", PASS if count else FAIL,
                            f"{count} GPU(s)" if count else "NVML sees no GPU"))
    else:
        checks.append(Check("gpu_count", PASS if count == expect_gpus else FAIL,
                            f"{count} GPU(s), {expect_gpus} expected"))
    for g in gpus:
        i = g["index"]
        used_mib = g["memory_used_bytes"] / 2**20
        procs = g["compute_processes"]
        idle = not procs and used_mib <= max_memory_used_mib
        detail = f"{used_mib:.0f} MiB used (max {max_memory_used_mib:.0f}), {len(procs)} compute process(es)"
        if procs:
            detail += ": pids " + ", ".join(str(p["pid"]) for p in procs)
        checks.append(Check("idle", PASS if idle else FAIL, detail, i))
        reasons = g["clock_event_reasons"]
        if reasons is None:
            checks.append(Check("throttle", SKIP, "clock-event reasons not supported", i))
        else:
            bad = [text for bit, text in THROTTLE_REASONS.items() if reasons & bit]
            status = FAIL if bad else (WARN if reasons & SW_POWER_CAP else PASS)
            checks.append(Check("throttle", status, ", ".join(bad) if bad else
                                ("software power cap active" if status == WARN else f"reasons 0x{reasons:x}"), i))
        ecc = g["ecc_uncorrected_volatile"]
        checks.append(Check("ecc", SKIP if ecc is None else (PASS if ecc == 0 else FAIL),
                            "ECC not supported or off" if ecc is None else f"{ecc} volatile uncorrected error(s)", i))
        pm = g["persistence_mode"]
        checks.append(Check("persistence_mode", SKIP if pm is None else (PASS if pm == 1 else FAIL),
                            "not supported" if pm is None else ("on" if pm == 1 else
                            "off: the driver may unload between jobs (sudo nvidia-smi -pm 1)"), i))
        clock, clock_max = g["sm_clock_mhz"], g["sm_clock_max_mhz"]
        checks.append(Check("clocks", PASS if clock_max else SKIP,
                            f"SM {clock} MHz now, max {clock_max} MHz" if clock_max else "clocks not reported", i))
        gen, gen_max, width, width_max = g["pcie_gen"], g["pcie_gen_max"], g["pcie_width"], g["pcie_width_max"]
        if None in (gen, gen_max, width, width_max):
            checks.append(Check("pcie_link", SKIP, "PCIe link not reported", i))
        else:
            # An idle GPU may train its link down to save power (gen 1); only a narrower width is a fault.
            ok = width == width_max
            note = "" if gen == gen_max else " (gen below max: normal while idle, it trains up under load)"
            checks.append(Check("pcie_link", PASS if ok else FAIL,
                                f"gen {gen}/{gen_max}, x{width}/x{width_max}{note}", i))
    return checks


def _disk_check(path: Path, need_bytes: int | None) -> Check:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if not need_bytes:
        return Check("disk", PASS, f"{free / 1e9:.1f} GB free at {probe}")
    ok = free >= need_bytes
    return Check("disk", PASS if ok else FAIL, f"{free / 1e9:.1f} GB free at {probe}, {need_bytes / 1e9:.1f} GB needed")


def hf_cache_dir() -> Path:
    """The HF hub cache huggingface_hub uses: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface")
    return (home / "hub").expanduser()


def _cold_checks(hf_repos: Iterable[str], local_weights: Iterable[Path],
                 resident: Callable[[Path], int | None]) -> list[Check]:
    checks = []
    for repo in hf_repos:
        entry = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
        # The harness gives every cold start a fresh HF_HUB_CACHE (optimize/hygiene.py), so an entry
        # here is not hit by a measured start; it is a warning for starts outside the harness.
        checks.append(Check("hf_cache_cold", WARN if entry.exists() else PASS,
                            f"{entry} exists: a start outside the harness would not download (the harness uses "
                            "a fresh HF_HUB_CACHE per start)" if entry.exists() else f"no {entry.name} in {entry.parent}"))
    for weights in local_weights:
        files = sorted(weights.glob("*.safetensors")) if weights.is_dir() else [weights]
        total = sum(f.stat().st_size for f in files if f.is_file())
        if not total:
            checks.append(Check("page_cache_cold", SKIP, f"no weights at {weights}"))
            continue
        counted = [resident(f) for f in files]
        if any(c is None for c in counted):
            checks.append(Check("page_cache_cold", SKIP, f"page-cache residency unknown for {weights}"))
            continue
        fraction = sum(c or 0 for c in counted) / total
        # Warn, not fail: the harness evicts local weights before every cold start (optimize/hygiene.py)
        # and records the residency it found after; this shows what a start outside it would find.
        checks.append(Check("page_cache_cold", WARN if fraction > MAX_RESIDENT_FRACTION else PASS,
                            f"{fraction:.0%} of {total / 1e9:.2f} GB at {weights} in the page cache"
                            + (" (the harness evicts it before each cold start; elsewhere: vmtouch -e)"
                               if fraction > MAX_RESIDENT_FRACTION else "")))
    return checks


def run_preflight(*, nvml: Any | None = None, expect_gpus: int | None = None,
                  max_memory_used_mib: float = DEFAULT_MAX_MEMORY_USED_MIB, disk_path: Path | None = None,
                  need_bytes: int | None = None, hf_repos: Sequence[str] = (), local_weights: Sequence[Path] = (),
                  resident: Callable[[Path], int | None] | None = None) -> PreflightReport:
    """Run every check. *nvml*: an initialised ``pynvml`` (tests pass recorded answers); None loads it.

    ``expect_gpus=0`` is the CPU lane: no GPU checks, only disk and caches.
    """
    settings = {"expect_gpus": expect_gpus, "max_memory_used_mib": max_memory_used_mib,
                "disk_path": str(disk_path) if disk_path else None, "need_bytes": need_bytes}
    checks: list[Check] = []
    gpus: list[dict[str, Any]] = []
    if expect_gpus != 0:
        try:
            nvml = nvml or load_nvml()
        except NvmlUnavailable as exc:
            return PreflightReport((), (), str(exc), settings)
        try:
            gpus = gpu_facts(nvml)
        except nvml.NVMLError as exc:
            return PreflightReport((), (), f"NVML query failed: {exc}", settings)
        checks += _gpu_checks(gpus, expect_gpus, max_memory_used_mib)
    if disk_path is not None:
        checks.append(_disk_check(disk_path, need_bytes))
    if resident is None:
        from pytest_coldstart.optimize.pagecache import resident_bytes

        resident = resident_bytes
    checks += _cold_checks(hf_repos, local_weights, resident)
    return PreflightReport(tuple(checks), tuple(gpus), "", settings)


def probe_host_to_gpu(size_gib: float = 2.0, repeats: int = 5) -> dict[str, float]:
    """Host->GPU copy bandwidth through torch, GB/s (best of *repeats*): pinned and pageable.

    The floor for weights that come from RAM (page cache); docs: How-to > An 8xH100 runner. The load efficiency
    takes it through ``measure.floors.probe_host_to_gpu_floor`` (in a child process, once per session).
    Needs CUDA torch and a GPU; NOT run in this project yet (no GPU here). Raises ``NvmlUnavailable``
    without CUDA.
    """
    import time

    try:
        import torch
    except ImportError:
        raise NvmlUnavailable("torch is not installed") from None
    if not torch.cuda.is_available():
        raise NvmlUnavailable("torch sees no CUDA device: the host->GPU probe needs a GPU")
    n = int(size_gib * 2**30)
    device = torch.device("cuda", 0)
    dst = torch.empty(n, dtype=torch.uint8, device=device)
    out = {}
    for label, pinned in (("pinned", True), ("pageable", False)):
        src = torch.empty(n, dtype=torch.uint8, pin_memory=pinned)
        src.fill_(1)
        best = float("inf")
        for _ in range(repeats):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            dst.copy_(src, non_blocking=pinned)
            torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        out[f"{label}_gbps"] = round(n / best / 1e9, 2)
        del src
    out["size_bytes"] = n
    return out
