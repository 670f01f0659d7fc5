"""Ray Serve LLM output for people: ``coldstart ray-timeline`` and summary notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
