"""``coldstart report | anchors | floor``: the HTML report, the on-paper tables, a floor probe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_coldstart.measure.floors import DEFAULT_PROBE_BYTES, MiB, probe_local_disk, probe_s3
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import atomic_write_text
from pytest_coldstart.model.flags import checked
from pytest_coldstart.model.result import load_results
from pytest_coldstart.report.anchors import DEFAULT_ANCHORS, load_anchors, render
from pytest_coldstart.report.compare import launchers_markdown, safe_markdown
from pytest_coldstart.report.efficiency import efficiency_markdown, pull_efficiency_markdown
from pytest_coldstart.report.html import build_report


def _report(args: argparse.Namespace) -> int:
    info = build_report(Path(args.results), Path(args.out), png_dir=Path(args.png_dir) if args.png_dir else None,
                        anchors_path=Path(args.anchors) if args.anchors else None)
    pngs = sorted({str(f.path.parent) for f in info.figures})
    print(f"wrote {info.path} ({info.runs} runs, {len(info.figures)} figures; PNGs in {', '.join(pngs)})")
    if args.markdown:
        results = load_results(Path(args.results))
        atomic_write_text(Path(args.markdown), safe_markdown(efficiency_markdown(results)
                                                             + pull_efficiency_markdown(results)
                                                             + launchers_markdown(results)))
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


def _anchors(args: argparse.Namespace) -> int:
    print(render(load_anchors(Path(args.data))), end="")
    return 0


def _floor(args: argparse.Namespace) -> int:
    if args.s3_url:
        if not args.s3_url.startswith("s3://") or "/" not in args.s3_url[5:]:
            raise ConfigError(f"--s3-url {args.s3_url!r}: expected s3://BUCKET/KEY of one object (a weights file)")
        try:
            import boto3
        except ImportError:
            raise ConfigError("the S3 probe needs boto3: pip install boto3") from None
        bucket, key = args.s3_url[5:].split("/", 1)
        client = boto3.client("s3", endpoint_url=args.endpoint_url or None)
        floor = probe_s3(client, bucket, key, max_bytes=args.mib * MiB, endpoint=args.endpoint_url or "")
        kind = "s3"
    else:
        floor = probe_local_disk(Path(args.dir), size_bytes=args.mib * MiB)
        kind = "local"
    print(f"{floor.gbps:.3g} GB/s  ({floor.detail})")
    print(f"to use it: floor_gbps = {{ {kind} = {floor.gbps:.3g} }} under the model in benchmarks/models.toml")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("report", help="HTML report: waterfalls, comparisons, load efficiency",
                       description="Render results/runs/*.json into one self-contained HTML page "
                                   "(figures embedded) plus the PNGs beside it.")
    p.add_argument("results", nargs="?", default="results", metavar="RESULTS_DIR", help="default: results")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--png-dir", default=None, help="where the PNGs go (default: <out stem>-figures/ beside --out)")
    p.add_argument("--anchors", default=None, help="published-numbers file for the on-paper section "
                   "(default: benchmarks/h100_anchors.toml when it exists)")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the load-efficiency markdown "
                   "table (for a PR comment) to FILE")
    p.set_defaults(func=_report)

    p = sub.add_parser("anchors", help="published H100 load times against physical floors (markdown)",
                       description="Print the docs' load-efficiency tables, computed from the "
                                   "published numbers in the anchors file.")
    p.add_argument("--data", default=str(DEFAULT_ANCHORS), help=f"anchors file (default: {DEFAULT_ANCHORS})")
    p.set_defaults(func=_anchors)

    p = sub.add_parser("floor", help="measure the floor bandwidth of a weight source",
                       description="Local disk: read a scratch file with the page cache evicted "
                                   "(posix_fadvise DONTNEED). S3: sequential ranged GETs of one object.")
    p.add_argument("--dir", default=".coldstart/probe", help="directory on the disk to probe (default: %(default)s)")
    p.add_argument("--s3-url", default=None, help="probe S3 instead: s3://BUCKET/KEY of one object")
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint (e.g. http://127.0.0.1:5000 for moto_server)")
    p.add_argument("--mib", type=checked("count", "256"), default=DEFAULT_PROBE_BYTES // MiB,
                   help="MiB to read (default: %(default)s)")
    p.set_defaults(func=_floor)
