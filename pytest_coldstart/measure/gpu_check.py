"""``make gpu-check``: one JSON report of what a GPU host offers the harness.

Sections, each recorded with its own outcome (one that cannot run says why and
the rest go on):

* ``gpu``: is there a CUDA GPU at all (NVML, else torch); without one the
  report says "no GPU" and the check exits 2 (could not decide) at once;
* ``preflight``: the NVML pre-flight (``measure.preflight``: idle, throttling,
  ECC, PCIe) where nvidia-ml-py is installed;
* ``host_to_gpu``: the host->GPU floor probe (``measure.floors``, a child process);
* ``environment``: the environment capture every result carries, GPU facts included;
* ``check_vllm``: ``coldstart check-vllm`` of the installed vLLM (or ``--vllm-source``);
* ``probe_hooks``: the in-vLLM probe's targets resolved by importing their modules
  in a child process, where vLLM is installed.

It needs only torch with CUDA and this package: no vLLM (sections that need it say
"skipped"), no package registry. Run it as ``python -m pytest_coldstart.measure.gpu_check``
(what ``make gpu-check`` does) or ``coldstart gpu-check``. Exit 0: the report is
written and every section that ran passed; 2: no GPU, or a section failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPORT_VERSION = 1
#: The whole check must end well inside 10 minutes; the probes get these.
H2D_TIMEOUT_S = 180.0
HOOKS_TIMEOUT_S = 240.0

_HOOKS_CHILD = r"""
import importlib, json, sys
from pytest_coldstart.logs.vllm_plugin import TARGETS
out = []
for module, qualname, step in TARGETS:
    rec = {"target": f"{module}:{qualname}", "step": step}
    try:
        owner = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        status = "module_missing" if exc.name == module else "import_error"
        rec.update(status=status, detail=f"{type(exc).__name__}: {exc}"[:300]); out.append(rec); continue
    except Exception as exc:  # e.g. a CPU/XPU worker module that cannot import on this platform
        rec.update(status="import_error", detail=f"{type(exc).__name__}: {exc}"[:300]); out.append(rec); continue
    parts = qualname.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            break
    attr = None if owner is None else (owner.__dict__.get(parts[-1]) if isinstance(owner, type)
                                       else getattr(owner, parts[-1], None))
    rec["status"] = "resolved" if callable(attr) else "missing"
    out.append(rec)
print(json.dumps(out))
"""


def gpu_presence() -> tuple[bool, str]:
    """(a CUDA GPU is there, how we know or why not), NVML first, then torch in a child process."""
    try:
        from pytest_coldstart.measure.preflight import NvmlUnavailable, load_nvml
    except ImportError as exc:  # pragma: no cover - the package itself is incomplete
        return False, f"pytest_coldstart.measure.preflight not importable: {exc}"
    try:
        nvml = load_nvml()
        count = int(nvml.nvmlDeviceGetCount())
        if count > 0:
            return True, f"NVML: {count} GPU(s)"
        nvml_why = "NVML sees 0 GPUs"
    except NvmlUnavailable as exc:
        nvml_why = str(exc)
    except Exception as exc:  # an NVML error class from pynvml
        nvml_why = f"NVML query failed: {exc}"
    if importlib.util.find_spec("torch") is None:
        return False, f"no GPU: {nvml_why}; torch is not installed either"
    try:
        proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                              capture_output=True, text=True, timeout=120, check=False)
        count = int(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 and proc.stdout.strip() else 0
    except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
        return False, f"no GPU: {nvml_why}; torch could not be asked ({exc})"
    if count > 0:
        return True, f"torch: {count} CUDA device(s) ({nvml_why})"
    return False, f"no GPU: {nvml_why}; torch sees no CUDA device"


def _section(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; an error becomes its record (status "error", what to do), never a traceback."""
    started = time.monotonic()
    try:
        record = run()
    except ImportError as exc:
        record = {"status": "skipped", "detail": f"{exc}; install what it names, or ignore this section"}
    except Exception as exc:
        record = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
    record.setdefault("status", "ok")
    record["duration_s"] = round(time.monotonic() - started, 3)
    return record


def _preflight() -> dict[str, Any]:
    from pytest_coldstart.measure.preflight import run_preflight

    report = run_preflight().to_record()
    status = {0: "ok", 1: "failed"}.get(int(report["exit_code"]), "skipped")
    return {"status": status, **report}


def _host_to_gpu(size_gib: float) -> dict[str, Any]:
    from pytest_coldstart.measure.floors import probe_host_to_gpu_floor

    floor = probe_host_to_gpu_floor(size_gib, timeout_s=H2D_TIMEOUT_S)
    if isinstance(floor, str):
        return {"status": "error", "detail": floor}
    return {"status": "ok", "pinned_gbps": floor.pinned_gbps, "pageable_gbps": floor.pageable_gbps,
            "detail": floor.detail}


def _environment(repo: Path) -> dict[str, Any]:
    from pytest_coldstart.measure.environment import collect_environment

    return {"status": "ok", "environment": collect_environment(repo)}


def _check_vllm(source: Path | None) -> dict[str, Any]:
    from pytest_coldstart.logs.vllm_source import SourceTree, check_tree, installed_vllm_dir

    path = source or installed_vllm_dir()
    if path is None:
        return {"status": "skipped", "detail": "vLLM is not installed here (pass --vllm-source DIR to check a tree)"}
    report = check_tree(SourceTree.locate(path)).to_dict()
    return {"status": "ok" if report["verdict"] == "ok" else "failed", "report": report}


def _probe_hooks() -> dict[str, Any]:
    from pytest_coldstart.logs.vllm_source import installed_vllm_dir

    if installed_vllm_dir() is None:
        return {"status": "skipped", "detail": "vLLM is not installed here: nothing for the probe to hook"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[2]),
                                                                   os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-c", _HOOKS_CHILD], capture_output=True, text=True, env=env,
                          timeout=HOOKS_TIMEOUT_S, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "error", "detail": f"resolving the hooks failed (exit {proc.returncode}: {tail})"}
    targets = json.loads(lines[-1])
    steps: dict[str, list[str]] = {}
    for t in targets:
        steps.setdefault(t["step"], [])
        if t["status"] == "resolved":
            steps[t["step"]].append(t["target"])
    blind = [step for step, found in steps.items() if not found]
    return {"status": "failed" if blind else "ok", "targets": targets, "steps_without_hook": blind}


def run_gpu_check(out: Path, *, workdir: Path = Path(".coldstart"), h2d_gib: float = 2.0,
                  vllm_source: Path | None = None, repo: Path | None = None,
                  presence: Callable[[], tuple[bool, str]] = gpu_presence) -> int:
    """Write the report to *out*; 0 when every section that ran passed, 2 without a GPU or on a failure."""
    from pytest_coldstart.model.files import atomic_write_json

    started = time.monotonic()
    has_gpu, how = presence()
    report: dict[str, Any] = {"report_version": REPORT_VERSION, "tool": "coldstart gpu-check",
                              "host": platform.node(), "python": platform.python_version(),
                              "wall_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "gpu": {"present": has_gpu, "detail": how}}
    if not has_gpu:
        report.update(verdict="no_gpu", exit_code=2, duration_s=round(time.monotonic() - started, 3))
        atomic_write_json(out, report)
        print(f"coldstart gpu-check: no GPU on this machine ({how}); nothing to check. Report: {out}. "
              "Run it on a GPU host (docs/how-to/gpu-check.md).", file=sys.stderr)
        return 2
    repo = repo or Path.cwd()
    workdir.mkdir(parents=True, exist_ok=True)
    sections = {
        "preflight": _section("preflight", _preflight),
        "host_to_gpu": _section("host_to_gpu", lambda: _host_to_gpu(h2d_gib)),
        "environment": _section("environment", lambda: _environment(repo)),
        "check_vllm": _section("check_vllm", lambda: _check_vllm(vllm_source)),
        "probe_hooks": _section("probe_hooks", _probe_hooks),
    }
    bad = [name for name, rec in sections.items() if rec["status"] in ("failed", "error")]
    report.update(sections=sections, failed=bad, verdict="ok" if not bad else "failed", exit_code=2 if bad else 0,
                  duration_s=round(time.monotonic() - started, 3))
    atomic_write_json(out, report)
    for name, rec in sections.items():
        print(f"  {rec['status']:<8} {name} ({rec['duration_s']:.1f} s){': ' + rec['detail'] if rec.get('detail') else ''}")
    print(f"coldstart gpu-check: {report['verdict']} ({how}); report: {out}")
    return int(report["exit_code"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_coldstart.measure.gpu_check",
                                     description="One JSON report of this GPU host (make gpu-check).")
    parser.add_argument("--out", default="results/gpu-check.json", type=Path)
    parser.add_argument("--workdir", default=".coldstart", type=Path)
    parser.add_argument("--h2d-gib", default=2.0, type=float)
    parser.add_argument("--vllm-source", default=None, type=Path)
    args = parser.parse_args(argv)
    if not (0 < args.h2d_gib <= 64):
        print("gpu-check: --h2d-gib must be in (0, 64]", file=sys.stderr)
        return 2
    try:
        return run_gpu_check(args.out, workdir=args.workdir, h2d_gib=args.h2d_gib, vllm_source=args.vllm_source)
    except OSError as exc:
        print(f"gpu-check: {exc.strerror or exc} ({exc.filename or ''}); check --out's directory and free space",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
