"""Load efficiency on paper: published H100 load times against physical floors.

Reads ``benchmarks/h100_anchors.toml`` (values copied, with citations, from
``shared/research/coldstart-anchors.md``) and computes

    floor_s = weight bytes / floor bandwidth   (per-GPU tiers: / (bandwidth x TP))
    % of floor = floor_s / observed_s          (= achieved GB/s / floor GB/s)

``coldstart anchors`` prints the two markdown tables that the docs' H100 page carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.model.efficiency import GB
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml, toml_array_of_tables, toml_tables

GiB = 2**30
DEFAULT_ANCHORS = Path("benchmarks/h100_anchors.toml")


@dataclass(frozen=True)
class AnchorModel:
    name: str
    label: str
    tensor_parallel_size: int
    weight_bytes: float
    cite: str = ""


@dataclass(frozen=True)
class AnchorFloor:
    """A bandwidth tier; ``per_gpu`` tiers scale with the number of GPUs loading in parallel."""

    name: str
    label: str
    gbps: float
    per_gpu: bool = False
    cite: str = ""

    def seconds(self, model: AnchorModel) -> float:
        lanes = model.tensor_parallel_size if self.per_gpu else 1
        return model.weight_bytes / (self.gbps * GB * lanes)


@dataclass(frozen=True)
class Observation:
    model: str
    what: str
    seconds: float
    floors: tuple[str, ...]
    cite: str = ""


@dataclass(frozen=True)
class Anchors:
    models: dict[str, AnchorModel]
    floors: dict[str, AnchorFloor]
    observations: tuple[Observation, ...]


@dataclass(frozen=True)
class PaperRow:
    """One published load time against one floor."""

    model: AnchorModel
    observation: Observation
    floor: AnchorFloor

    @property
    def achieved_gbps(self) -> float:
        return self.model.weight_bytes / self.observation.seconds / GB

    @property
    def floor_s(self) -> float:
        return self.floor.seconds(self.model)

    @property
    def percent_of_floor(self) -> float:
        return 100.0 * self.floor_s / self.observation.seconds


def _number(raw: Mapping[str, object], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where}: {key} = {value!r}; expected a number > 0")
    return float(value)


def load_anchors(path: Path = DEFAULT_ANCHORS) -> Anchors:
    """Parse and cross-check the anchors file; every problem names the table and key."""
    if not path.exists():
        raise ConfigError(f"anchors file not found: {path}; pass --data PATH (the repo has {DEFAULT_ANCHORS})")
    data = load_toml(path, "anchors file")
    models = {}
    for name, raw in toml_tables(data, "models", str(path)).items():
        where = f"{path} [models.{name}]"
        tp = raw.get("tensor_parallel_size", 1)
        if not isinstance(tp, int) or tp < 1:
            raise ConfigError(f"{where}: tensor_parallel_size = {tp!r}; expected an integer >= 1")
        size = _number(raw, "weight_gib", where) * GiB if "weight_gib" in raw else _number(raw, "weight_gb", where) * GB
        models[name] = AnchorModel(name, str(raw.get("label", name)), tp, size, str(raw.get("cite", "")))
    floors = {}
    for name, raw in toml_tables(data, "floors", str(path)).items():
        where = f"{path} [floors.{name}]"
        gbps = _number(raw, "gib_per_s", where) * GiB / GB if "gib_per_s" in raw else _number(raw, "gbps", where)
        floors[name] = AnchorFloor(name, str(raw.get("label", name)), gbps, bool(raw.get("per_gpu", False)),
                                   str(raw.get("cite", "")))
    observations = []
    for i, raw in enumerate(toml_array_of_tables(data, "observations", str(path))):
        where = f"{path} [[observations]] #{i + 1}"
        model = raw.get("model")
        if not isinstance(model, str) or model not in models:
            raise ConfigError(f"{where}: model {model!r} is not a [models.*] table")
        named = raw.get("floors", [])
        if not isinstance(named, list) or not all(isinstance(f, str) for f in named):
            raise ConfigError(f"{where}: floors = {named!r}; expected a list of [floors.*] names")
        unknown = [f for f in named if f not in floors]
        if unknown or not named:
            raise ConfigError(f"{where}: floors {unknown or '[]'} unknown; known: {', '.join(floors)}")
        observations.append(Observation(model, str(raw.get("what", "")), _number(raw, "seconds", where),
                                        tuple(str(f) for f in named), str(raw.get("cite", ""))))
    if not models or not floors:
        raise ConfigError(f"{path}: needs [models.*] and [floors.*] tables")
    return Anchors(models, floors, tuple(observations))


def paper_rows(anchors: Anchors) -> list[PaperRow]:
    return [PaperRow(anchors.models[o.model], o, anchors.floors[f]) for o in anchors.observations for f in o.floors]


def _s(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 1 else f"{seconds:.1f}"


def floors_markdown(anchors: Anchors) -> str:
    """Lower bound on weight-load time per model and tier (coldstart-anchors.md 3.3, recomputed)."""
    models = list(anchors.models.values())
    head = "| floor (bandwidth) | " + " | ".join(f"{m.label} TP{m.tensor_parallel_size}" for m in models) + " |"
    lines = [head, "|---|" + "---:|" * len(models)]
    lines.append("| weights | " + " | ".join(f"{m.weight_bytes / GB:.1f} GB" for m in models) + " |")
    for floor in anchors.floors.values():
        label = floor.label + (" x TP" if floor.per_gpu else "")
        lines.append(f"| {label} | " + " | ".join(f"{_s(floor.seconds(m))} s" for m in models) + " |")
    return "\n".join(lines) + "\n"


def paper_markdown(anchors: Anchors) -> str:
    """Published load times as "load at X GB/s = Y% of floor"."""
    lines = ["| model (TP) | load | observed s | load at GB/s | floor | floor s | % of floor |",
             "|---|---|---:|---:|---|---:|---:|"]
    for row in paper_rows(anchors):
        m = row.model
        lines.append(f"| {m.label} (TP{m.tensor_parallel_size}) | {row.observation.what} | "
                     f"{_s(row.observation.seconds)} | {row.achieved_gbps:.3g} | {row.floor.label} | "
                     f"{_s(row.floor_s)} | {row.percent_of_floor:.3g}% |")
    return "\n".join(lines) + "\n"


def render(anchors: Anchors) -> str:
    """Both tables, exactly as docs/measurements/h100-anchors.md carries them."""
    return ("Floor = weight bytes / bandwidth of the source (per-GPU tiers: / (bandwidth x TP)).\n\n"
            + floors_markdown(anchors)
            + "\nPublished load times on p5.48xlarge (8 x H100) against those floors:\n\n"
            + paper_markdown(anchors))
