"""Load efficiency: bytes loaded / load time, against the floor bandwidth of the source.

A cold start has to move the model's weights from where they live (local
disk, the HF hub, S3) into the engine. The fastest that can possibly go is
``weight_bytes / floor bandwidth``; a run's efficiency is that floor time as a
share of the load time it actually took (= achieved GB/s / floor GB/s).

Two floors: the storage floor of the source (disk read, S3 GETs), and for
weights already in RAM (the page cache) the host->GPU copy (pinned memory into
the GPU). Which one a run is held to follows the page-cache residency of its
local weights right before the start; both are shown. On an H200 host the
plain safetensors load from page cache reached 5.5 GB/s, 10 % of the pinned
55.3 GB/s, while it looked 4.6x above the 1.2 GB/s disk floor
(``shared/research/h200-floors.md``): against storage alone that 10x is hidden.

Units: GB/s are decimal (1e9 bytes per second), like the published numbers
in ``shared/research/coldstart-anchors.md`` section 3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_coldstart.model.jsonvalue import JsonObject, JsonValue, opt_float, opt_int, opt_str
from pytest_coldstart.model.phase import Phase

GB = 1e9

#: How a load time was obtained, most direct first (see ``load_time``).
BASIS_STREAM = "vLLM-reported Run:ai stream time (stream_s)"
BASIS_PHASES = "weights_download + weights_load phases"
BASIS_PHASE = "weights_load phase"
BASIS_REPORTED = "vLLM-reported load time"
#: vLLM's "Loading weights took X seconds" (default_loader.py, 0.7+): the weight transfer alone. The
#: ``weights_load`` phase, vLLM's "Model loading took" and its OTel span "Loading (GPU|CPU)" also cover
#: building the model (and post-processing): 0.94 s vs 0.09 s transfer on a tiny model (vLLM 0.32, CPU lane),
#: so bytes over that time read 10x too slow. Where vLLM reports the transfer, it is the basis.
BASIS_TRANSFER = "vLLM-reported weight transfer (weights_load_s)"

#: What the load time covers (``LoadEfficiency.load_scope``).
SCOPE_TRANSFER = "weight transfer only"
SCOPE_MODEL_LOAD = "model load (construction + transfer)"

FLOOR_PROBE = "probe"
FLOOR_CONFIGURED = "configured"

#: The ``floor_gbps`` key (models.toml) of the host->GPU floor: weights that come from RAM (the page cache).
HOST_TO_GPU = "host_to_gpu"
#: Which floor a run is held to (``LoadEfficiency.floor_applies``).
APPLIES_STORAGE = "storage"
APPLIES_HOST_TO_GPU = HOST_TO_GPU
#: Share of the local weights in the page cache right before the start from which the bytes are taken to come
#: from RAM: the host->GPU copy, not the storage read, is then the floor that matters (most bytes, most time).
FROM_RAM_SHARE = 0.5


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
class HostToGpuFloor:
    """The fastest a GPU takes bytes from host RAM: the floor for weights already in the page cache.

    Measured as a torch copy into ``cuda:0`` (``measure.preflight.probe_host_to_gpu``) or configured as
    ``floor_gbps.host_to_gpu`` in models.toml. For scale, an H200 host (PCIe gen5 x16) measured pinned
    55.3 GB/s, pageable 9.4 GB/s (shared/research/h200-floors.md).

    :param pinned_gbps: pinned (page-locked) host memory -> GPU, GB/s: the floor.
    :param pageable_gbps: ordinary (pageable) host memory -> GPU, GB/s; None where not measured (configured).
    :param source: ``"probe"`` or ``"configured"``.
    """

    pinned_gbps: float
    pageable_gbps: float | None
    source: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.pinned_gbps > 0:
            raise ValueError(f"host->GPU floor must be > 0 GB/s, got {self.pinned_gbps!r}")
        if self.pageable_gbps is not None and not self.pageable_gbps > 0:
            raise ValueError(f"pageable host->GPU bandwidth must be > 0 GB/s or None, got {self.pageable_gbps!r}")

    def to_dict(self) -> JsonObject:
        return {"pinned_gbps": self.pinned_gbps, "pageable_gbps": self.pageable_gbps, "source": self.source,
                "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> HostToGpuFloor:
        if not isinstance(data, Mapping):
            raise TypeError(f"host_to_gpu must be an object, got {type(data).__name__}")
        pinned = opt_float(data["pinned_gbps"], "host_to_gpu.pinned_gbps")
        if pinned is None:
            raise TypeError("host_to_gpu.pinned_gbps: expected a number, got null")
        return cls(pinned_gbps=pinned, pageable_gbps=opt_float(data.get("pageable_gbps"), "host_to_gpu.pageable_gbps"),
                   source=opt_str(data.get("source"), "host_to_gpu.source") or "",
                   detail=opt_str(data.get("detail"), "host_to_gpu.detail") or "")


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
    #: The host->GPU floor (weights from RAM); None with ``host_to_gpu_note`` saying why (no CUDA device).
    host_to_gpu: HostToGpuFloor | None = None
    host_to_gpu_note: str = ""
    #: Share (0..1) of the local weight files in the page cache right before the start (mincore); None: unknown.
    resident_share: float | None = None
    #: What ``load_s`` covers: ``SCOPE_TRANSFER`` or ``SCOPE_MODEL_LOAD`` (None: no load time, or a record
    #: from before the field existed).
    load_scope: str | None = None

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

    @property
    def host_to_gpu_s(self) -> float | None:
        if self.weight_bytes is None or self.host_to_gpu is None:
            return None
        return self.weight_bytes / (self.host_to_gpu.pinned_gbps * GB)

    @property
    def percent_of_host_to_gpu(self) -> float | None:
        achieved = self.achieved_gbps
        if achieved is None or self.host_to_gpu is None:
            return None
        return 100.0 * achieved / self.host_to_gpu.pinned_gbps

    @property
    def floor_applies(self) -> str | None:
        """``"host_to_gpu"`` when most weights were in the page cache and that floor is known, else
        ``"storage"`` when a storage floor is known, else None."""
        if (self.host_to_gpu is not None and self.resident_share is not None
                and self.resident_share >= FROM_RAM_SHARE):
            return APPLIES_HOST_TO_GPU
        return APPLIES_STORAGE if self.floor_gbps is not None else None

    def to_dict(self) -> JsonObject:
        def r(value: float | None, digits: int = 6) -> float | None:
            return None if value is None else round(value, digits)

        out: JsonObject = {
            "weight_bytes": self.weight_bytes, "load_s": r(self.load_s), "load_basis": self.load_basis,
            **({"load_scope": self.load_scope} if self.load_scope is not None else {}),
            "source_kind": self.source_kind, "achieved_gbps": r(self.achieved_gbps),
            "floor_gbps": r(self.floor_gbps), "floor_source": self.floor_source,
            "floor_detail": self.floor_detail, "floor_s": r(self.floor_s),
            "percent_of_floor": r(self.percent_of_floor, 3), "note": self.note}
        # Written only when known, so a result from before the host->GPU floor writes back byte-identical.
        if self.host_to_gpu is not None or self.host_to_gpu_note:
            out["host_to_gpu"] = None if self.host_to_gpu is None else {
                **self.host_to_gpu.to_dict(), "floor_s": r(self.host_to_gpu_s),
                "percent": r(self.percent_of_host_to_gpu, 3)}
            out["host_to_gpu_note"] = self.host_to_gpu_note
        if self.resident_share is not None:
            out["resident_share"] = r(self.resident_share, 4)
        if self.host_to_gpu is not None or self.resident_share is not None:
            out["floor_applies"] = self.floor_applies
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> LoadEfficiency:
        if not isinstance(data, Mapping):
            raise TypeError(f"efficiency must be an object, got {type(data).__name__}")

        def number(key: str) -> float | None:
            return opt_float(data.get(key), f"efficiency.{key}")

        def text(key: str) -> str | None:
            return opt_str(data.get(key), f"efficiency.{key}")

        h2d = data.get("host_to_gpu")
        # Derived values (achieved, floor_s, percent) are recomputed, not trusted.
        return cls(weight_bytes=opt_int(data.get("weight_bytes"), "efficiency.weight_bytes"), load_s=number("load_s"),
                   load_basis=text("load_basis"), source_kind=text("source_kind"),
                   floor_gbps=number("floor_gbps"), floor_source=text("floor_source"),
                   floor_detail=text("floor_detail") or "", note=text("note") or "",
                   host_to_gpu=HostToGpuFloor.from_dict(h2d) if isinstance(h2d, dict) and h2d else None,
                   host_to_gpu_note=text("host_to_gpu_note") or "", resident_share=number("resident_share"),
                   load_scope=text("load_scope"))

    def describe(self) -> str:
        """``load at X GB/s = Y% of floor`` in words, or why it can't be said.

        With a host->GPU floor and most weights in the page cache that floor leads (it is the one that
        matters) and the storage floor follows; otherwise the storage floor leads and the host->GPU one
        follows, or the line says why there is none ("no CUDA device (not probed)").
        """
        if self.achieved_gbps is None:
            return f"load efficiency: not observed ({self.note})"
        text = f"load at {format_gbps(self.achieved_gbps)} GB/s"
        scope = f"; {self.load_scope}" if self.load_scope else ""
        loaded = f"{format_bytes(self.weight_bytes)} in {self.load_s:.3g} s ({self.load_basis}{scope})"
        h2d = self.host_to_gpu
        if h2d is not None and self.floor_applies == APPLIES_HOST_TO_GPU:
            storage = ("no storage floor" if self.percent_of_floor is None else
                       f"storage floor {format_gbps(self.floor_gbps)} GB/s (source: {self.floor_source}) "
                       f"= {self.percent_of_floor:.3g}%")
            return (f"{text} = {self.percent_of_host_to_gpu:.3g}% of host->GPU pinned {format_gbps(h2d.pinned_gbps)}"
                    f" GB/s ({self._resident_words()}; {self._h2d_words()}); {storage}; {loaded}")
        if self.percent_of_floor is None:
            text += f"; no floor ({self.note})"
        else:
            text += (f" = {self.percent_of_floor:.3g}% of floor {format_gbps(self.floor_gbps)} GB/s "
                     f"(source: {self.floor_source}); {loaded}")
            if self.percent_of_floor > 100 and self.resident_share is not None and self.resident_share < FROM_RAM_SHARE:
                # Cold and still faster: the probe's plain sequential read is slower than the loader's (readahead,
                # parallel reads), e.g. 1.51 GB/s loaded vs 1.2 GB/s O_DIRECT on the H200 host (h200-floors.md).
                text += "; above the floor with the weights not in the page cache: the floor understates the storage"
            elif self.percent_of_floor > 100:
                text += "; above the floor: the bytes came from a faster tier (page cache) than the floor's"
        if h2d is not None:
            resident = "" if self.resident_share is None else f"{self._resident_words()}; "
            text += (f"; host->GPU pinned {format_gbps(h2d.pinned_gbps)} GB/s = {self.percent_of_host_to_gpu:.3g}%"
                     f" ({resident}{self._h2d_words()})")
        elif self.host_to_gpu_note:
            text += f"; host->GPU floor: {self.host_to_gpu_note}"
        return text

    def _resident_words(self) -> str:
        if self.resident_share is None:
            return "page-cache residency unknown"
        return f"weights {100 * self.resident_share:.0f}% in page cache"

    def _h2d_words(self) -> str:
        h2d = self.host_to_gpu
        assert h2d is not None
        pageable = "" if h2d.pageable_gbps is None else f"pageable {format_gbps(h2d.pageable_gbps)} GB/s, "
        return f"{pageable}source: {h2d.source}"


def format_gbps(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


def load_time(phases: Sequence[Phase], reported: Mapping[str, object]) -> tuple[float | None, str]:
    """Seconds the weights took from the source into the engine, and how we know.

    In order: the Run:ai streamer's own stream time (pure I/O; vLLM >= 0.6.5
    logs it per rank and ``timeline`` keeps the max); else vLLM's own weight
    transfer time ("Loading weights took", ``weights_load_s``) where the load
    was observed, plus an observed ``weights_download`` phase; else the observed
    ``weights_download`` + ``weights_load`` phases (the user-visible load, on
    the run's own stamps: model construction included); else vLLM's
    self-reported download + load seconds. ``load_scope`` says which it covers.
    """
    stream_s = reported.get("stream_s")
    if isinstance(stream_s, (int, float)) and stream_s > 0:
        return float(stream_s), BASIS_STREAM
    by_name = {p.name: p for p in phases}
    load = by_name.get("weights_load")
    download = by_name.get("weights_download")
    downloaded = download is not None and download.duration_s is not None
    transfer_s = reported.get("weights_load_s")
    if load is not None and load.duration_s is not None and isinstance(transfer_s, (int, float)) and transfer_s > 0:
        if downloaded:
            assert download is not None and download.duration_s is not None
            return (download.duration_s + float(transfer_s),
                    f"weights_download phase ({download.source}) + {BASIS_TRANSFER}")
        return float(transfer_s), BASIS_TRANSFER
    if load is not None and load.duration_s is not None:
        if downloaded:
            assert download is not None and download.duration_s is not None
            return download.duration_s + load.duration_s, f"{BASIS_PHASES} ({load.source})"
        return load.duration_s, f"{BASIS_PHASE} ({load.source})"
    for key in ("weights_load_s", "model_load_s"):
        value = reported.get(key)
        if isinstance(value, (int, float)) and value > 0:
            download_s = reported.get("weights_download_s")
            if isinstance(download_s, (int, float)) and key == "weights_load_s":
                return float(value) + float(download_s), f"{BASIS_REPORTED} (weights_download_s + {key})"
            return float(value), f"{BASIS_REPORTED} ({key})"
    return None, "weights_load phase not observed and vLLM reported no load time"


def load_scope(basis: str | None) -> str | None:
    """What a load time of this basis covers: the weight transfer alone, or the whole model load."""
    if basis is None:
        return None
    if basis == BASIS_STREAM or BASIS_TRANSFER in basis or basis.endswith("weights_load_s)"):
        return SCOPE_TRANSFER
    return SCOPE_MODEL_LOAD


def assess(weight_bytes: int | None, phases: Sequence[Phase], reported: Mapping[str, object],
           floor: FloorBandwidth | None, *, source_kind: str | None = None,
           floor_note: str = "", host_to_gpu: HostToGpuFloor | None = None, host_to_gpu_note: str = "",
           resident_share: float | None = None) -> LoadEfficiency:
    """One run's load efficiency; *floor_note* says why *floor* is None, *host_to_gpu_note* why
    *host_to_gpu* is (e.g. "no CUDA device (not probed)"); *resident_share*: of the local weights in the
    page cache right before the start, None where unknown."""
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
                          note="; ".join(notes), host_to_gpu=host_to_gpu,
                          host_to_gpu_note="" if host_to_gpu is not None else host_to_gpu_note,
                          resident_share=resident_share, load_scope=load_scope(basis) if load_s is not None else None)
