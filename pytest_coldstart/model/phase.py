"""One startup phase as a value: where it starts and ends, and how we know."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_coldstart.model.case import StrEnum


class PhaseSource(StrEnum):
    """How a phase's times were obtained."""

    ARRIVAL = "arrival"  # stamped on arrival by the harness's monotonic clock
    LOG = "log_timestamp"  # the log's own 1 s timestamps (offline parsing)
    HARNESS = "harness"  # observed by the harness itself (spawn, /health)
    PLUGIN = "plugin"  # timed inside vLLM by the coldstart probe (logs/vllm_plugin.py)
    OTEL = "otel"  # timed inside vLLM by vLLM's own OpenTelemetry startup spans (logs/otel.py, vLLM 0.16+)
    NOT_OBSERVED = "not_observed"


SOURCE_ARRIVAL, SOURCE_LOG, SOURCE_HARNESS, SOURCE_NOT_OBSERVED = (
    PhaseSource.ARRIVAL, PhaseSource.LOG, PhaseSource.HARNESS, PhaseSource.NOT_OBSERVED)
SOURCE_PLUGIN = PhaseSource.PLUGIN
SOURCE_OTEL = PhaseSource.OTEL


@dataclass(frozen=True)
class Phase:
    """One startup phase; ``duration_s is None`` means it was not observed."""

    name: str
    start_s: float | None
    end_s: float | None
    duration_s: float | None
    source: str
    reported_s: float | None = None
    #: Phases this one's interval also covers because the vLLM that wrote the log has no line that ends them
    #: (e.g. vLLM 0.8.1 logs no "Available KV cache memory": its ``kv_cache`` includes ``memory_profiling``).
    #: Those stay "not observed"; their time is here, named, instead of in ``unaccounted``.
    includes: tuple[str, ...] = ()

    @property
    def observed(self) -> bool:
        return self.duration_s is not None

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name, "start_s": self.start_s, "end_s": self.end_s,
                                   "duration_s": self.duration_s, "source": str(self.source),
                                   "reported_s": self.reported_s}
        if self.includes:
            data["includes"] = list(self.includes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Phase:
        includes = data.get("includes") or ()
        return cls(data["name"], data["start_s"], data["end_s"], data["duration_s"],  # type: ignore[arg-type]
                   data["source"], data.get("reported_s"),  # type: ignore[arg-type]
                   tuple(str(name) for name in includes))  # type: ignore[attr-defined]
