"""Regenerate tests/data/results/h100-llama70b/runs/*.json from the published Ray Serve LLM logs.

    .venv/bin/python tests/data/results/make_h100_results.py tests/data/ray-serve-llm-h100

Phases come from the logs' own 1 s timestamps (``timeline_from_log``); the logs have no /health
line, so total_ready_s and TTFT are not observed. Efficiency uses models.toml's llama-3-70b
weight_bytes and floor_gbps (s3 for the Run:ai streams, hf for HF downloads).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_coldstart.model.efficiency import FLOOR_CONFIGURED, FloorBandwidth, assess
from pytest_coldstart.model.result import SCHEMA_VERSION, RunResult
from pytest_coldstart.logs.timeline import timeline_from_log

#: log file -> (optimization, source kind, floor GB/s: coldstart-anchors.md 3.2)
LOGS = {
    "llama70b-base.log": ("baseline", "hf", 0.72),
    "llama70b-s3-runai.log": ("runai_streamer", "s3", 6.013),
    "llama70b-s3-runai-sharded.log": ("runai_streamer_sharded", "s3", 6.013),
    "llama70B-compile-cache.log": ("compile_cache", "hf", 0.72),
    "llama70B-all.log": ("all", "s3", 6.013),
}
WEIGHT_BYTES = 141107412992  # benchmarks/models.toml [models.llama-3-70b]


def main(logs_dir: Path) -> None:
    out = Path(__file__).resolve().parent / "h100-llama70b" / "runs"
    out.mkdir(parents=True, exist_ok=True)
    for name, (opt, kind, gbps) in LOGS.items():
        text = (logs_dir / name).read_text(encoding="utf-8", errors="replace")
        # The logs' first line: "INFO 10-15 11:52:11 ..." (vLLM logs no year; the runs were in 2025).
        month_day, clock = text.split()[1:3]
        started_at = f"2025-{month_day}T{clock}+00:00"
        timeline = timeline_from_log(text)
        floor = FloorBandwidth(gbps, FLOOR_CONFIGURED, f"models.toml [models.llama-3-70b] floor_gbps.{kind}")
        result = RunResult(
            model="llama-3-70b", optimization=opt, launcher="ray-serve-llm", cache_state="cold",
            started_at=started_at, phases=timeline.phases, reported=dict(timeline.reported),
            total_ready_s=timeline.total_ready_s, ttft_s=None, first_response_s=None,
            unaccounted_s=timeline.unaccounted_s,
            environment={"vllm": timeline.reported.get("vllm_version"), "gpu_name": "NVIDIA H100 80GB HBM3",
                         "gpu_count": 8},
            exit_status="ok", log_path=f"shared/logs/ray-serve-llm-h100/{name}", last_phase=timeline.last_phase_reached,
            efficiency=assess(WEIGHT_BYTES, timeline.phases, timeline.reported, floor, source_kind=kind),
        )
        data = result.to_dict()
        assert data["schema_version"] == SCHEMA_VERSION
        stamp = started_at[:19].replace("-", "").replace(":", "")
        (out / f"{stamp}_llama-3-70b_{opt}_ray-serve-llm_r0.json").write_text(json.dumps(data, indent=2) + "\n")
        print(opt, result.efficiency.describe() if result.efficiency else None)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
