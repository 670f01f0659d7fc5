"""``coldstart gate run``: the PR workflow's interleaved cold starts, one pytest process per start.

Each side is a checkout (the PR workflow's ``base`` and ``head`` worktrees). A start of side S runs S's own
benchmark suite with S's own code, exactly as the workflow's fixed loop did::

    cd S && S/.venv/bin/python -m pytest benchmarks -m coldstart -p no:cacheprovider -rs \\
        --model M --coldstart-results OUT/runs-S --coldstart-asv off [EXTRA...]

(without ``S/.venv`` the current interpreter runs it with ``S`` first on ``PYTHONPATH``). After each
(base, head) pair ``sequential.run_sequential`` judges and stops as soon as it can answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.history.sweep import run_logged
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.result import RunResult, load_results

SIDES = ("base", "head")


@dataclass(frozen=True)
class Side:
    """One checkout and how its suite is run."""

    name: str
    checkout: Path
    python: Path
    env: dict[str, str]

    @classmethod
    def of(cls, name: str, checkout: Path) -> Side:
        checkout = checkout.resolve()
        if not (checkout / "benchmarks").is_dir():
            raise ConfigError(f"--{name} {checkout}: no benchmarks/ directory; pass the checkout of the {name} "
                              "commit (the PR workflow's worktree)")
        venv = checkout / ".venv" / "bin" / "python"
        env = dict(os.environ)
        if venv.exists():
            return cls(name, checkout, venv, env)
        # No venv of its own: this interpreter, with the checkout's package first on the path.
        env["PYTHONPATH"] = os.pathsep.join([str(checkout), *filter(None, [env.get("PYTHONPATH")])])
        return cls(name, checkout, Path(sys.executable), env)


def results_dir(out: Path, side: str) -> Path:
    """Where a side's run files go: OUT/runs-base, OUT/runs-head (the PR workflow's artifact layout)."""
    return out / f"runs-{side}"


def pytest_argv(side: Side, out: Path, model: str, extra: Sequence[str]) -> list[str]:
    return [str(side.python), "-m", "pytest", "benchmarks", "-m", "coldstart", "-p", "no:cacheprovider", "-rs",
            "--model", model, "--coldstart-results", str(results_dir(out, side.name)), "--coldstart-asv", "off",
            *extra]


def starter(sides: dict[str, Side], out: Path, model: str, extra: Sequence[str], *, timeout_s: float,
            log: Callable[[str], None] = print) -> Callable[[str, int], None]:
    """``start(side, i)`` for ``run_sequential``: one cold start of *side*; a failing pytest is logged and
    left for the gate to judge from the run file it wrote (a failed start is evidence too)."""

    def start(name: str, i: int) -> None:
        side = sides[name]
        log_path = out / "logs" / f"{name}-{i:02d}.log"
        code = run_logged(pytest_argv(side, out, model, extra), log_path, timeout_s=timeout_s, cwd=side.checkout,
                          env=side.env)
        if code != 0:
            log(f"{name} start {i}: pytest exited {code} (see {log_path})")

    return start


def collector(out: Path) -> Callable[[], tuple[list[RunResult], list[RunResult]]]:
    def collect() -> tuple[list[RunResult], list[RunResult]]:
        runs = []
        for name in SIDES:
            d = results_dir(out, name)
            runs.append(load_results(d) if (d / "runs").is_dir() else [])
        return runs[0], runs[1]

    return collect
