"""Ray Serve LLM output for people: ``coldstart ray-timeline`` and summary notes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_coldstart.logs.ray import looks_like_ray_log, ray_timeline_from_log


def add_commands(subparsers: Any) -> None:
    """``coldstart ray-timeline LOG``: Ray phases of a saved Ray Serve LLM log."""
    p = subparsers.add_parser(
        "ray-timeline", help="split a saved Ray Serve LLM log into scale-from-zero phases",
        description="Parse a Ray Serve LLM driver log (saved by --launcher ray-serve, or a console capture "
                    "with (ServeReplica:...) prefixes) into Ray phases (scheduling, replica init) and the vLLM "
                    "engine phases inside the replica. Times come from the log's own timestamps.")
    p.add_argument("logfile", metavar="LOGFILE")
    p.add_argument("--json", action="store_true", help="print JSON: phases list and reported object")
    p.set_defaults(func=_ray_timeline_command)


def _ray_timeline_command(args: argparse.Namespace) -> int:
    from pytest_coldstart.cli import print_timeline, read_log

    path = Path(args.logfile)
    text = read_log(path, "ray-timeline")
    if text is None:
        return 2
    if not looks_like_ray_log(text):
        print(f"coldstart ray-timeline: {path} has no Ray Serve lines ((ServeReplica:...) prefixes or "
              "[coldstart-ray] events); for a plain vLLM log use `coldstart timeline`", file=sys.stderr)
        return 2
    timeline = ray_timeline_from_log(text)
    print_timeline(timeline, path, args.json, f"{path.name} (Ray Serve LLM; t = 0 at the first request "
                                              "when the log says when it was sent)")
    if not args.json and timeline.total_ready_s is None:
        print("total (request sent -> first token): not observed; only logs saved by --launcher ray-serve "
              "record when the first request was sent")
    return 0


def ray_notes(results: Sequence[Any]) -> list[str]:
    """Summary lines for ray-serve results: Ray's own figures beside the log-derived ones."""
    runs = [r for r in results if getattr(r, "launcher", None) == "ray-serve"]
    if not runs:
        return []

    def median(key: str) -> str:
        values = sorted(float(r.reported[key]) for r in runs if isinstance(r.reported.get(key), (int, float)))
        return "not observed" if not values else f"{values[len(values) // 2]:.2f} s"

    first = runs[0].reported
    bucket = first.get("replica_startup_metric_bucket_s")
    return [
        "Ray (time 0 = first request, total = first token): replica startup "
        f"{median('replica_startup_log_s')} from the log, {median('replica_startup_reported_s')} by the controller, "
        f"{median('replica_startup_metric_s')} by serve_replica_startup_latency_ms"
        + (f" (bucket {bucket[0]:g}-{bucket[1]:g} s)" if isinstance(bucket, list) else ""),
        f"Ray replica init {median('replica_init_log_s')} from the log, {median('replica_init_reported_s')} by the "
        f"controller, {median('replica_init_metric_s')} by serve_replica_initialization_latency_ms; "
        f"before the request: ray.init {median('ray_init_s')}, app deploy {median('app_deploy_s')}",
    ]
