"""Long asv histories built through the real ``record`` path, for ``coldstart changes`` and publish at scale.

A scratch git repository gets N commits (``git fast-import``, one second apart); every commit gets the
cold starts of each case recorded with ``asv_store.record``, exactly as the nightly does. The starts are
the real CPU-lane starts of ``tests/data/noise-study`` (their phase mix and their tails), one drawn per
commit and case, scaled by log-normal noise of a chosen spread: the measured log-ratio sd is 0.035 on a
quiet box (tests/data/aa-study) and 0.085 on a noisy one (tests/data/noise-study), so one start's
log seconds get sd/sqrt(2) in common and each phase sd/2 more (noisy: torch_compile 0.081, total 0.06,
as measured: 0.078 and 0.06 in tests/data/noise-study; quiet: 0.045 and 0.03). A step multiplies one
phase of one case from a given commit on; the run's total and unaccounted time follow from its phases.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.history import asv_store
from pytest_coldstart.history.commits import Commit
from pytest_coldstart.model.result import RunResult, load_results

DATA = Path(__file__).resolve().parent / "data"
REAL_STARTS = DATA / "noise-study" / "baseline"
QUIET_SD = 0.035
NOISY_SD = 0.085
START_S = 1_780_000_000


@dataclass(frozen=True)
class Step:
    """Multiply *phase* of the case (model, optimization) by *factor* from commit index *at* on."""

    model: str
    optimization: str
    phase: str
    factor: float
    at: int


def make_repo(repo: Path, count: int, *, first: int = 0) -> list[Commit]:
    """*count* more commits on ``main`` of *repo* (created when missing), one second apart, via fast-import."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    lines: list[str] = []
    for i in range(first, first + count):
        message = f"commit {i}\n"
        when = START_S + i
        lines += ["commit refs/heads/main", f"mark :{i + 1}", f"committer bench <bench@localhost> {when} +0000",
                  f"data {len(message)}", message.rstrip("\n")]
        if i == first and first:
            lines.append("from refs/heads/main^0")
        content = f"{i}\n"
        lines += ["M 644 inline counter.txt", f"data {len(content)}", content.rstrip("\n"), ""]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input="\n".join(lines) + "\n", text=True,
                   check=True)
    out = subprocess.run(["git", "log", "--reverse", "--format=%H %ct", "main"], cwd=repo, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    made = [Commit(h, int(t) * 1000) for h, t in (line.split() for line in out if line)]
    return made[first:first + count]


def real_starts() -> list[RunResult]:
    """The real starts, each scaled to the median total: their phase mixes vary, their totals do not
    (the noise of a point is the chosen sd, not the noisy study's on top)."""
    runs = [r for r in load_results(REAL_STARTS) if r.ok and r.total_ready_s]
    median = sorted(r.total_ready_s or 0.0 for r in runs)[len(runs) // 2]
    out = []
    for run in runs:
        k = median / (run.total_ready_s or median)
        out.append(dataclasses.replace(
            run, phases=tuple(dataclasses.replace(p, duration_s=None if p.duration_s is None else p.duration_s * k)
                              for p in run.phases),
            unaccounted_s=None if run.unaccounted_s is None else run.unaccounted_s * k))
    return out


def synthetic_run(template: RunResult, *, model: str, optimization: str, scale: float,
                  phase_factor: Callable[[str], float], rng: random.Random, jitter_sd: float,
                  stamp: str) -> RunResult:
    """*template* as a start of (model, optimization): phases scaled; total and unaccounted follow."""
    phases = []
    for p in template.phases:
        if p.duration_s is None:
            phases.append(p)
            continue
        factor = scale * phase_factor(p.name) * math.exp(rng.gauss(0.0, jitter_sd))
        phases.append(dataclasses.replace(p, duration_s=p.duration_s * factor))
    unaccounted = (template.unaccounted_s or 0.0) * scale
    total = sum(p.duration_s for p in phases if p.duration_s is not None) + unaccounted
    return dataclasses.replace(template, model=model, optimization=optimization, phases=tuple(phases),
                               total_ready_s=total, unaccounted_s=unaccounted, started_at=stamp,
                               log_path=f"logs/{stamp}_{model}_{optimization}.log", ttft_s=template.ttft_s)


def build(asv_dir: Path, commits: Sequence[Commit], cases: Sequence[tuple[str, str]], *, sd: float,
          steps: Sequence[Step] = (), seed: int = 0, first: int = 0, starts: Sequence[RunResult] = (),
          repeat: int = 1) -> None:
    """Record *repeat* starts per case at each of *commits* (indices from *first*) into *asv_dir* with
    ``record`` (the nightly records 3: its REPEAT; asv's point is their median)."""
    pool = list(starts) or real_starts()
    rng = random.Random(seed * 1_000_003 + first)
    for i, commit in enumerate(commits, start=first):
        runs = []
        for model, optimization in cases:
            def factor(phase: str, model: str = model, optimization: str = optimization, i: int = i) -> float:
                out = 1.0
                for s in steps:
                    if (s.model, s.optimization, s.phase) == (model, optimization, phase) and i >= s.at:
                        out *= s.factor
                return out

            for r in range(repeat):
                runs.append(synthetic_run(rng.choice(pool), model=model, optimization=optimization,
                                          scale=math.exp(rng.gauss(0.0, sd / math.sqrt(2))), phase_factor=factor,
                                          rng=rng, jitter_sd=sd / 2, stamp=f"2026-01-01T00:00:00.{i:06d}-{r}"))
        asv_store.record(runs, asv_dir, commit, machine="bench-machine")


def cases(count: int) -> list[tuple[str, str]]:
    """*count* cases as model x optimization (5 models x 3 optimizations for 15)."""
    models = ("tiny-llama", "llama-3-8b", "llama-3-70b", "qwen-3-235b", "mistral-7b")
    optimizations = ("baseline", "compile_cache", "enforce_eager")
    return [(m, o) for m in models for o in optimizations][:count]


def write_asv_conf(repo: Path, results_dir: Path, html_dir: Path) -> Path:
    path = repo / "asv.conf.json"
    path.write_text(json.dumps({"version": 1, "project": "bench", "repo": ".", "branches": ["main"], "dvcs": "git",
                                "environment_type": "existing", "results_dir": str(results_dir),
                                "html_dir": str(html_dir), "hash_length": 8}))
    return path


def slowdown_project(root: Path, after_good: Sequence[str]) -> tuple[Path, list[str]]:
    """A scratch project that adopted pytest-coldstart (this repository's benchmarks/ suite and registry):
    a good commit, then one commit per entry of *after_good*: ``"docs"`` changes a README, ``"slow"`` merges
    the noise study's ``slowdown_probe`` into ``baseline`` (``noise.slowed_registry``: a bigger profiling
    batch, real extra work in memory_profiling). Returns the repository and the commit hashes, oldest first."""
    import shutil

    from pytest_coldstart.history.noise import slowed_registry

    repo_root = Path(__file__).resolve().parents[1]
    repo = root / "project"
    (repo / "benchmarks").mkdir(parents=True)
    for name in ("conftest.py", "test_coldstart.py", "models.toml", "optimizations.toml"):
        shutil.copy(repo_root / "benchmarks" / name, repo / "benchmarks" / name)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("config", "user.name", "coldstart-demo")
    git("config", "user.email", "coldstart-demo@localhost")
    made = []

    def commit(message: str) -> None:
        git("add", "-A")
        git("commit", "-qm", message)
        made.append(git("rev-parse", "HEAD"))

    commit("good: the cold-start suite")
    for i, kind in enumerate(after_good, start=1):
        if kind == "slow":
            slowed = slowed_registry(repo / "benchmarks", root / f"slowed-{i}")
            shutil.copy(slowed / "optimizations.toml", repo / "benchmarks" / "optimizations.toml")
            commit(f"commit {i}: baseline with a bigger profiling batch (the injected slowdown)")
        else:
            (repo / "README.md").write_text(f"docs {i}\n")
            commit(f"commit {i}: docs")
    return repo, made
