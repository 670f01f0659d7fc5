"""``coldstart init`` (a starter ``benchmarks/`` in an existing repository) and ``coldstart --version``.

Like ``asv quickstart``: the files it writes are a starting point to edit, never overwritten.
"""

from __future__ import annotations

import argparse
import subprocess
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import atomic_path
from pytest_coldstart.model.flags import checked
from pytest_coldstart.model.paths import under
from pytest_coldstart.model.registry import packaged_file

#: (template in pytest_coldstart/defaults/init, where it goes under the repository)
STARTER_FILES: tuple[tuple[str, str], ...] = (
    ("conftest.py.tmpl", "benchmarks/conftest.py"),
    ("test_coldstart.py.tmpl", "benchmarks/test_coldstart.py"),
    ("models.toml", "benchmarks/models.toml"),
    ("optimizations.toml", "benchmarks/optimizations.toml"),
    ("budgets.toml", "benchmarks/budgets.toml"),
    ("asv.conf.json", "asv.conf.json"),
)
GITIGNORE_LINES = (".coldstart/", "results/runs/", "results/logs/", "results/.coldstart-asv.lock",
                   "results/asv/.coldstart-asv.lock", ".asv/")


def package_version() -> str:
    try:
        return metadata.version("pytest-coldstart")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _template(name: str) -> str:
    return resources.files("pytest_coldstart").joinpath("defaults").joinpath("init").joinpath(name).read_text(encoding="utf-8")


def _branch(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "main"
    return out.stdout.strip() or "main"


def init_repository(repo: Path, *, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Write the starter files into *repo*; returns (written, kept as they were)."""
    if not repo.is_dir():
        raise ConfigError(f"{repo} is not a directory; run `coldstart init` in your repository's root")
    written, kept = [], []
    for template, target in STARTER_FILES:
        path = repo / target
        if path.exists() and not force:
            kept.append(path)
            continue
        text = _template(template)
        if target == "asv.conf.json":
            text = text.replace('"PROJECT"', f'"{repo.resolve().name}"').replace('"BRANCH"', f'"{_branch(repo)}"')
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(path)
    ignore = repo / ".gitignore"
    have = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
    missing = [line for line in GITIGNORE_LINES if line not in have]
    if missing:
        with ignore.open("a", encoding="utf-8") as fh:
            fh.write(("" if not have or have[-1] == "" else "\n") + "# pytest-coldstart\n" + "\n".join(missing) + "\n")
        written.append(ignore)
    return written, kept


def _init(args: argparse.Namespace) -> int:
    if args.show_defaults:
        for name in ("models.toml", "optimizations.toml", "budgets.toml", "compare.toml"):
            path = packaged_file(name)
            print(f"# ---- {path}\n{path.read_text(encoding='utf-8')}")
        return 0
    repo = Path(args.dir)
    written, kept = init_repository(repo, force=args.force)
    for path in written:
        print(f"wrote {path}")
    for path in kept:
        print(f"kept  {path} (exists; --force overwrites)")
    print("\nnext:\n"
          "  pytest benchmarks -m coldstart --coldstart-model tiny-llama   # a real cold start on the CPU lane\n"
          "  asv publish && asv preview                                   # the history recorded under results/asv/")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("init", help="write a starter benchmarks/ (conftest, one test, commented TOML) and "
                       "asv.conf.json into an existing repository",
                       description="Write a starter cold-start suite into DIR (default: .): benchmarks/conftest.py, "
                       "benchmarks/test_coldstart.py, commented benchmarks/{models,optimizations,budgets}.toml "
                       "that override the packaged defaults entry by entry, asv.conf.json and .gitignore lines. "
                       "Existing files are kept.")
    p.add_argument("dir", nargs="?", default=".", help="the repository root (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite existing starter files")
    p.add_argument("--show-defaults", action="store_true", help="print the packaged registry, budgets and "
                   "compare thresholds, with their paths, and exit")
    p.set_defaults(func=_init)
    add_runner_commands(sub)


def _preflight_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """What the model x optimization named on the command line needs: disk, and which caches must be cold."""
    from pytest_coldstart.model.case import CachePolicy
    from pytest_coldstart.model.registry import load_registry, split_source

    workdir = Path(args.workdir)
    inputs: dict[str, Any] = {"disk_path": Path(args.disk) if args.disk else workdir}
    if not args.model:
        return inputs
    registry = load_registry(Path(args.registry), required=args.registry != "benchmarks")
    model = registry.model(args.model)
    optimization = registry.optimization(args.optimization)
    kind, ref = split_source(model.source_for(optimization.name))
    if model.weight_bytes and kind in ("hf", "s3"):
        inputs["need_bytes"] = int(model.weight_bytes * 1.1)  # the download (or shard staging) plus caches
    if optimization.cache != CachePolicy.WARM:
        if kind == "hf":
            inputs["hf_repos"] = [ref]
        elif kind == "local":
            inputs["local_weights"] = [Path(ref).expanduser()]
        elif kind == "generated":
            inputs["local_weights"] = [under(workdir / "models", ref, what="generated model name")]
    return inputs


def _probe_h2d(args: argparse.Namespace) -> int:
    import json

    from pytest_coldstart.measure.preflight import NvmlUnavailable, probe_host_to_gpu

    try:
        result = probe_host_to_gpu(size_gib=args.probe_gib)
    except NvmlUnavailable as exc:
        print(f"coldstart preflight --probe-h2d: cannot probe (exit 2): {exc}")
        return 2
    print(json.dumps(result) if args.json else
          f"host->GPU copy, {result['size_bytes'] / 2**30:.1f} GiB, best of 5: pinned {result['pinned_gbps']} GB/s, "
          f"pageable {result['pageable_gbps']} GB/s")
    return 0


def _preflight(args: argparse.Namespace) -> int:
    import json

    from pytest_coldstart.measure.preflight import run_preflight

    if args.probe_h2d:
        return _probe_h2d(args)

    report = run_preflight(expect_gpus=args.gpus, max_memory_used_mib=args.max_memory_used_mib,
                           **_preflight_inputs(args))
    if args.json:
        print(json.dumps(report.to_record(), indent=2, sort_keys=True))
        return report.exit_code
    from rich.console import Console
    from rich.table import Table

    table = Table(title="coldstart preflight", show_lines=False)
    for column in ("check", "gpu", "status", "detail"):
        table.add_column(column)
    for c in report.checks:
        table.add_row(c.name, "" if c.gpu is None else str(c.gpu), c.status.upper(), c.detail)
    console = Console(width=max(100, Console().width))
    if report.checks:
        console.print(table)
    for g in report.gpus:
        console.print(f"gpu {g['index']}: {g['name']}, {g['memory_total_bytes'] / 2**30:.0f} GiB, driver {g['driver']}, "
                      f"CUDA {g['cuda_version']}, PCIe gen {g['pcie_gen_max']} x{g['pcie_width_max']}")
    console.print(report.verdict, markup=False)
    return report.exit_code


def _export(args: argparse.Namespace) -> int:
    import json
    import sys

    from pytest_coldstart.model.result import load_results
    from pytest_coldstart.report.export import export

    runs = load_results(Path(args.results))
    if not runs:
        print(f"coldstart export: no runs under {Path(args.results) / 'runs'}; run the benchmarks first",
              file=sys.stderr)
        return 2
    text = json.dumps(export(runs, args.format), indent=2) + "\n"
    if args.output:
        out = Path(args.output)
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        print(f"wrote {args.format} export of {len(runs)} start(s) to {out}")
    else:
        sys.stdout.write(text)
    return 0


def add_runner_commands(sub: Any) -> None:
    from pytest_coldstart.report.export import FORMATS

    p = sub.add_parser("export", help="results as github-action-benchmark, Bencher (BMF) or pytest-benchmark JSON",
                       description="Read RESULTS_DIR/runs/*.json and write medians (and ranges) per case x metric, "
                       "in seconds: --format github (github-action-benchmark tool: customSmallerIsBetter), "
                       "bencher (Bencher Metric Format, for `bencher run --adapter json`), pytest-benchmark (a "
                       "file `pytest-benchmark compare` reads; rounds = cold starts).")
    p.add_argument("results", nargs="?", default="results", metavar="RESULTS_DIR", help="default: results")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", default="", metavar="FILE", help="write here (default: stdout)")
    p.set_defaults(func=_export)

    p = sub.add_parser("preflight", help="check a GPU runner with NVML before cold starts (exit 0 pass, 1 fail, "
                       "2 cannot check)",
                       description="Check, with NVML, that the expected GPUs are present and idle, not throttled, "
                       "ECC clean, in persistence mode, with full-width PCIe links; that the disk has room for the "
                       "weights; and that the caches the optimization expects cold are cold. Exit 0: every check "
                       "passed; 1: a check failed (listed); 2: could not check (no NVML / no NVIDIA driver).")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--gpus", type=checked("count0", "8"), default=None, metavar="N",
                   help="GPUs expected (default: at least one); 0 = CPU lane, GPU checks skipped")
    p.add_argument("--max-memory-used-mib", type=checked("nonnegative", "1024"), default=1024, metavar="MIB",
                   help="memory in use above which a GPU is not idle, MiB (default: 1024)")
    p.add_argument("--model", default="", help="check disk and cold caches for this model (registry name)")
    p.add_argument("--optimization", default="baseline", help="the optimization whose caches must be cold "
                   "(default: baseline)")
    p.add_argument("--registry", default="benchmarks", help="registry overrides directory (default: benchmarks)")
    p.add_argument("--workdir", default=".coldstart", help="the plugin's --coldstart-workdir (default: .coldstart)")
    p.add_argument("--disk", default="", help="path whose filesystem must have room (default: --workdir)")
    p.add_argument("--probe-h2d", action="store_true", help="instead: measure host->GPU copy bandwidth through torch "
                   "(pinned and pageable, best of 5), the floor for weights loaded from RAM; needs CUDA torch")
    p.add_argument("--probe-gib", type=checked("positive", "2"), default=2.0, metavar="GIB",
                   help="bytes per copy, GiB (default: 2)")
    p.set_defaults(func=_preflight)
