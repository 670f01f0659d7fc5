"""How ``coldstart publish`` scales with the history (issue 20: at most 30 s of CPU at 3,000 commits x 15 cases).

Builds a scratch repository and an asv history through the real ``record`` path (tests/history_builder.py:
one real CPU-lane start per case and commit, log-normal noise), then times ``coldstart publish`` in a
fresh process (CPU = user + system of that process and its children) at each size, growing the same
history::

    .venv/bin/python benchmarks/history_scale.py --sizes 1000,3000 --cases 15 --out .coldstart/history-scale

``--profile FILE`` also writes a cProfile of the largest publish (read it with ``python -m pstats``).
No server is started; it needs only asv and git.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import history_builder as hb


def _publish(conf: Path, html: Path, profile: Path | None) -> dict[str, float]:
    shutil.rmtree(html, ignore_errors=True)
    script = conf.parent.parent / "publish_once.py"  # a file, so cProfile can run it too
    script.write_text("import sys\nfrom pytest_coldstart.cli import main\n"
                      "sys.exit(main(['publish', '--config', sys.argv[1], '--html-dir', sys.argv[2]]))\n")
    cmd = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), str(script),
           str(conf), str(html)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=conf.parent,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    wall_s = time.monotonic() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"publish failed ({proc.returncode}): {proc.stderr[-2000:]}")
    warnings = [line for line in proc.stderr.splitlines() if "Skipping" in line or "warn" in line.lower()]
    return {"cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "wall_s": round(wall_s, 2), "warnings": len(warnings)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,3000", help="commit counts, ascending (default: 1000,3000)")
    parser.add_argument("--cases", type=int, default=15, help="model x optimization cases (default: 15)")
    parser.add_argument("--sd", type=float, default=hb.QUIET_SD, help="log sd of a point (default: 0.035)")
    parser.add_argument("--out", default=".coldstart/history-scale", help="scratch directory (emptied first)")
    parser.add_argument("--profile", help="write a cProfile of the largest publish here")
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    repo = out / "repo"
    asv_dir = repo / "results" / "asv"
    repo.mkdir(parents=True)
    conf = hb.write_asv_conf(repo, asv_dir, out / "html")
    done = 0
    figures = []
    for size in sizes:
        record_cpu = time.process_time()
        made = hb.make_repo(repo, size - done, first=done)
        hb.build(asv_dir, made, hb.cases(args.cases), sd=args.sd, first=done)
        record_cpu = time.process_time() - record_cpu
        done = size
        timing = _publish(conf, out / "html", Path(args.profile).resolve() if args.profile and size == sizes[-1]
                          else None)
        figures.append({"commits": size, "cases": args.cases, "record_cpu_s": round(record_cpu, 1), **timing})
        print(f"{size} commits x {args.cases} cases: publish {timing['cpu_s']} s CPU ({timing['wall_s']} s wall, "
              f"{timing['warnings']} warning line(s)); recording them took {record_cpu:.1f} s CPU", flush=True)
    if len(figures) > 1:
        a, b = figures[0], figures[-1]
        growth = (b["cpu_s"] / a["cpu_s"]) / (b["commits"] / a["commits"])
        print(f"CPU per commit grows x{growth:.2f} from {a['commits']} to {b['commits']} commits "
              f"({'linear or better' if growth <= 1.1 else 'faster than linear'})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
