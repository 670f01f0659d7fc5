"""Load efficiency: bytes loaded / load time, against the floor bandwidth of the source.

A cold start has to move the model's weights from where they live (local
disk, the HF hub, S3) into the engine. The fastest that can possibly go is
``weight_bytes / floor bandwidth``; a run's efficiency is that floor time as a
share of the load time it actually took (= achieved GB/s / floor GB/s).

Units: GB/s are decimal (1e9 bytes per second), like the published numbers
in ``shared/research/coldstart-anchors.md`` section 3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_coldstart.model.phase import Phase

GB = 1e9

#: How a load time was obtained, most direct first (see ``load_time``).
BASIS_STREAM = "vLLM-reported Run:ai stream time (stream_s)"
BASIS_PHASES = "weights_download + weights_load phases"
BASIS_PHASE = "weights_load phase"
BASIS_REPORTED = "vLLM-reported load time"

FLOOR_PROBE = "probe"
FLOOR_CONFIGURED = "configured"


@dataclass(frozen=True)
class FloorBandwidth:
    """The fastest a weight source can deliver bytes, and how we know.

    :param gbps: aggregate bandwidth of the source in GB/s (1e9 B/s).
    :param source: ``"probe"`` (measured here) or ``"configured"`` (models.toml).
    :param detail: what was measured or where the number was configured.
    """

    gbps: float
    source: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.gbps > 0:
            raise ValueError(f"floor bandwidth must be > 0 GB/s, got {self.gbps!r}")


@dataclass(frozen=True)
class LoadEfficiency:
    """How close one run's weight load came to the floor of its source.

    Every number that could not be had is None and ``note`` says why: an
    unobserved load is "not observed", never 0 % efficient.
    """

    weight_bytes: int | None
    load_s: float | None
    load_basis: str | None
    source_kind: str | None = None
    floor_gbps: float | None = None
    floor_source: str | None = None
    floor_detail: str = ""
    note: str = ""

    @property
    def achieved_gbps(self) -> float | None:
        if self.weight_bytes is None or not self.load_s:
            return None
        return self.weight_bytes / self.load_s / GB

    @property
    def floor_s(self) -> float | None:
        if self.weight_bytes is None or self.floor_gbps is None:
            return None
        return self.weight_bytes / (self.floor_gbps * GB)

    @property
    def percent_of_floor(self) -> float | None:
        achieved = self.achieved_gbps
        if achieved is None or self.floor_gbps is None:
            return None
        return 100.0 * achieved / self.floor_gbps

    def to_dict(self) -> dict[str, Any]:
        def r(value: float | None, digits: int = 6) -> float | None:
            return None if value is None else round(value, digits)

        return {"weight_bytes": self.weight_bytes, "load_s": r(self.load_s), "load_basis": self.load_basis,
                "source_kind": self.source_kind, "achieved_gbps": r(self.achieved_gbps),
                "floor_gbps": r(self.floor_gbps), "floor_source": self.floor_source,
                "floor_detail": self.floor_detail, "floor_s": r(self.floor_s),
                "percent_of_floor": r(self.percent_of_floor, 3), "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadEfficiency:
        if not isinstance(data, Mapping):
            raise TypeError(f"efficiency must be an object, got {type(data).__name__}")
        # Derived values (achieved, floor_s, percent) are recomputed, not trusted.
        return cls(weight_bytes=data.get("weight_bytes"), load_s=data.get("load_s"),
                   load_basis=data.get("load_basis"), source_kind=data.get("source_kind"),
                   floor_gbps=data.get("floor_gbps"), floor_source=data.get("floor_source"),
                   floor_detail=data.get("floor_detail", ""), note=data.get("note", ""))

    def describe(self) -> str:
        """``load at X GB/s = Y% of floor`` in words, or why it can't be said."""
        if self.achieved_gbps is None:
            return f"load efficiency: not observed ({self.note})"
        text = f"load at {format_gbps(self.achieved_gbps)} GB/s"
        if self.percent_of_floor is None:
            return f"{text}; no floor ({self.note})"
        text += (f" = {self.percent_of_floor:.3g}% of floor {format_gbps(self.floor_gbps)} GB/s "
                 f"(source: {self.floor_source}); {format_bytes(self.weight_bytes)} in {self.load_s:.3g} s "
                 f"({self.load_basis})")
        if self.percent_of_floor > 100:
            text += "; above the floor: the bytes came from a faster tier (page cache) than the floor's"
        return text


def format_gbps(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


def load_time(phases: Sequence[Phase], reported: Mapping[str, Any]) -> tuple[float | None, str]:
    """Seconds the weights took from the source into the engine, and how we know.

    In order: the Run:ai streamer's own stream time (pure I/O; vLLM >= 0.6.5
    logs it per rank and ``timeline`` keeps the max); else the observed
    ``weights_download`` + ``weights_load`` phases (the user-visible load, on
    the run's own stamps); else vLLM's self-reported download + load seconds.
    """
    stream_s = reported.get("stream_s")
    if isinstance(stream_s, (int, float)) and stream_s > 0:
        return float(stream_s), BASIS_STREAM
    by_name = {p.name: p for p in phases}
    load = by_name.get("weights_load")
    if load is not None and load.duration_s is not None:
        download = by_name.get("weights_download")
        if download is not None and download.duration_s is not None:
            return download.duration_s + load.duration_s, f"{BASIS_PHASES} ({load.source})"
        return load.duration_s, f"{BASIS_PHASE} ({load.source})"
    for key in ("model_load_s", "weights_load_s"):
        value = reported.get(key)
        if isinstance(value, (int, float)) and value > 0:
            download = reported.get("weights_download_s")
            if isinstance(download, (int, float)) and key == "weights_load_s":
                return float(value) + float(download), f"{BASIS_REPORTED} (weights_download_s + {key})"
            return float(value), f"{BASIS_REPORTED} ({key})"
    return None, "weights_load phase not observed and vLLM reported no load time"


def assess(weight_bytes: int | None, phases: Sequence[Phase], reported: Mapping[str, Any],
           floor: FloorBandwidth | None, *, source_kind: str | None = None,
           floor_note: str = "") -> LoadEfficiency:
    """One run's load efficiency; *floor_note* says why *floor* is None."""
    load_s, basis = load_time(phases, reported)
    notes = []
    if load_s is None:
        notes.append(basis)
    if weight_bytes is None:
        notes.append("weight_bytes not set for this model in benchmarks/models.toml")
    if floor is None:
        notes.append(floor_note or "no floor bandwidth for this source")
    return LoadEfficiency(weight_bytes=weight_bytes, load_s=load_s, load_basis=None if load_s is None else basis,
                          source_kind=source_kind, floor_gbps=floor.gbps if floor else None,
                          floor_source=floor.source if floor else None, floor_detail=floor.detail if floor else "",
                          note="; ".join(notes))
