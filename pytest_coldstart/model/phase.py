"""One startup phase as a value: where it starts and ends, and how we know."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_coldstart.model.case import StrEnum
from pytest_coldstart.model.jsonvalue import JsonObject, JsonValue, opt_float


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

    def to_dict(self) -> JsonObject:
        data: JsonObject = {"name": self.name, "start_s": self.start_s, "end_s": self.end_s,
                            "duration_s": self.duration_s, "source": str(self.source), "reported_s": self.reported_s}
        if self.includes:
            data["includes"] = list(self.includes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> Phase:
        name, source = data["name"], data["source"]
        if not isinstance(name, str) or not isinstance(source, str):
            raise TypeError(f"phase: expected a name and a source (strings), got {name!r} and {source!r}")
        includes = data.get("includes") or []
        if not isinstance(includes, list):
            raise TypeError(f"phase {name}: includes must be a list of phase names, got {includes!r}")
        return cls(name, opt_float(data["start_s"], f"{name}.start_s"), opt_float(data["end_s"], f"{name}.end_s"),
                   opt_float(data["duration_s"], f"{name}.duration_s"), source,
                   opt_float(data.get("reported_s"), f"{name}.reported_s"), tuple(str(n) for n in includes))
