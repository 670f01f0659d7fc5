"""Cache hygiene before a start: what is cold, what is kept, and proof of it.

Modes (the optimization's ``cache`` policy):

* ``cold``: empty torch.compile / Inductor / Triton caches (a fresh
  ``VLLM_CACHE_ROOT``, ``TRITON_CACHE_DIR`` under it), an empty HF hub cache
  (so the model has no entry), an emptied vLLM assets dir (where vLLM mirrors
  an ``s3://`` model's config and tokenizer), and the model's local files
  evicted from the page cache.
* ``compile``: as cold, but the compile cache root is the prepared one.
* ``warm``: nothing is cleared or evicted; the user's caches are used as they are.

Every mode records how much of the local weight files the page cache holds
right before the start (``page_cache_weights``, mincore): the load efficiency
holds weights in RAM to the host->GPU floor, cold ones to the storage floor.

The HF cache is made empty by pointing ``HF_HUB_CACHE`` at a fresh directory
rather than by deleting the user's entry: the start sees exactly what it sees
after a delete, and a 140 GB download the user already paid for is not lost.
Eviction uses ``posix_fadvise(POSIX_FADV_DONTNEED)`` per file (no root needed;
dirty pages are flushed first, since DONTNEED skips them) and measures page
residency before and after with ``mincore``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.paths import empty_dir, under
from pytest_coldstart.optimize.pagecache import WEIGHT_SUFFIXES, Eviction, Residency, evict, residency, resident_bytes

__all__ = ["Eviction", "HygienePlan", "HygieneReport", "Residency", "apply", "assets_dir_for", "evict", "model_files",
           "plan", "resident_bytes", "weights_residency"]
MODES = tuple(p.value for p in CachePolicy)


@dataclass(frozen=True)
class HygieneReport:
    """What one start was given: env overrides and the record of what was cleared."""

    mode: str
    env: dict[str, str]
    cleared: tuple[str, ...]
    kept: tuple[str, ...]
    eviction: Eviction = field(default_factory=Eviction)

    fresh: tuple[str, ...] = ()
    warm: tuple[str, ...] = ()
    #: Page-cache residency of the local weight files right before the start (every mode); None: no local weights.
    weights: Residency | None = None

    def to_record(self) -> dict[str, Any]:
        record = {"hygiene": self.mode, "cleared": list(self.cleared), "kept": list(self.kept),
                  "page_cache": self.eviction.to_dict(), "fresh": list(self.fresh), "warm": list(self.warm)}
        if self.weights is not None:
            record["page_cache_weights"] = self.weights.to_dict()
        return record


#: Every cache a start could hit, by short name (``fresh`` / ``warm`` in the result's ``cache`` record).
CACHES = ("compile", "hf_hub", "assets", "page_cache")


def model_files(model_dir: Path) -> list[Path]:
    """Every regular file of a local model directory (weights, config, tokenizer)."""
    if not model_dir.is_dir():
        return []
    return sorted(p for p in model_dir.rglob("*") if p.is_file() and not p.is_symlink())


def weights_residency(model_dir: Path | None) -> Residency | None:
    """Residency of the weight files of a local model directory (the load efficiency's floor choice)."""
    if model_dir is None:
        return None
    weights = [p for p in model_files(model_dir) if p.name.endswith(WEIGHT_SUFFIXES)]
    return residency(weights) if weights else None


def assets_dir_for(workdir: Path, model: str, optimization: str) -> Path:
    """The stable ``VLLM_ASSETS_CACHE`` of one model x optimization (emptied before each start).

    Built by ``paths.under``: a name with ``/`` or ``..`` is refused before anything is emptied.
    """
    return under(workdir / "cache" / "assets", f"{model}-{optimization}", what="model and optimization").resolve()


@dataclass(frozen=True)
class HygienePlan:
    """Env for the server, decided before any start; :func:`apply` runs right before the measured one."""

    mode: str
    env: dict[str, str]
    cleared: tuple[str, ...]
    kept: tuple[str, ...]
    assets_dir: Path
    local_model_dir: Path | None
    #: Caches outside this module that a strategy made warm on purpose (``image``: image_cached).
    also_warm: tuple[str, ...] = ()


def plan(mode: CachePolicy | str, *, compile_root: Path, run_root: Path, assets_dir: Path,
         local_model_dir: Path | None) -> HygienePlan:
    """The env and the record for *mode*; creates the fresh directories.

    :param compile_root: the ``VLLM_CACHE_ROOT`` to use (fresh for cold, prepared for compile/warm).
    :param run_root: a fresh per-run scratch directory (the HF hub cache lives here).
    :param assets_dir: stable ``VLLM_ASSETS_CACHE``: stable because vLLM hashes an s3:// model's
        mirror path (``<assets>/model_streamer/<sha>``) into its compile cache key.
    :param local_model_dir: the checkpoint directory served, if local (its files get evicted).
    """
    if mode not in MODES:
        raise ValueError(f"unknown hygiene mode {mode!r}; expected one of {MODES}")
    mode = CachePolicy(mode)
    env = {"VLLM_CACHE_ROOT": str(compile_root), "VLLM_ASSETS_CACHE": str(assets_dir)}
    if mode == "warm":
        # The model dir is kept (never evicted in warm mode) to record how much of it the page cache holds.
        return HygienePlan(mode, env, (), ("VLLM_CACHE_ROOT (compile, Inductor, Triton)", "HF hub cache",
                                           "vLLM assets", "page cache"), assets_dir, local_model_dir)
    # vLLM 0.31+ keeps a user-set TRITON_CACHE_DIR instead of its per-cache
    # default, so an inherited one would leak warm Triton kernels into the run.
    env["TRITON_CACHE_DIR"] = str(compile_root / "triton_cache")
    env["HF_HUB_CACHE"] = str(run_root / "hf_hub")
    Path(env["HF_HUB_CACHE"]).mkdir(parents=True, exist_ok=True)
    cleared = ["HF hub cache (fresh empty HF_HUB_CACHE for this run; the user's cache is not touched)"]
    kept: list[str] = []
    if mode == "cold":
        compile_root.mkdir(parents=True, exist_ok=True)
        if any(compile_root.iterdir()):
            raise ValueError(f"a cold start needs an empty VLLM_CACHE_ROOT; {compile_root} is not")
        cleared.insert(0, "VLLM_CACHE_ROOT (torch.compile, AOT, Inductor, Triton caches: fresh and empty)")
    else:
        kept.append("VLLM_CACHE_ROOT (the prepared torch.compile, Inductor and Triton caches)")
    return HygienePlan(mode, env, tuple(cleared), tuple(kept), assets_dir, local_model_dir)


def apply(p: HygienePlan) -> HygieneReport:
    """Right before the measured start: empty the assets dir, evict the model's pages."""
    if p.mode == "warm":
        p.assets_dir.mkdir(parents=True, exist_ok=True)
        return HygieneReport(p.mode, p.env, p.cleared, p.kept, warm=CACHES,
                             weights=weights_residency(p.local_model_dir))
    cleared = list(p.cleared)
    # Emptied again right before the start: nothing (a populate start, an earlier step) may have filled it.
    # Each through paths.empty_dir: it deletes only strictly inside the directory it was made for.
    hub = Path(p.env["HF_HUB_CACHE"])
    empty_dir(hub.parent, hub)  # <run_root>/hf_hub, made by plan()
    empty_dir(p.assets_dir.parent, p.assets_dir)  # <workdir>/cache/assets/<model>-<optimization>
    cleared.append("vLLM assets (where an s3:// model's config and tokenizer are mirrored)")
    eviction = Eviction()
    if p.local_model_dir is not None:
        eviction = evict(model_files(p.local_model_dir))
        cleared.append(f"page cache of the model's {eviction.files} local file(s) (posix_fadvise DONTNEED)")
    fresh = ["hf_hub", "assets"] + (["page_cache"] if p.local_model_dir is not None else [])
    warm = list(p.also_warm)
    (fresh if p.mode == "cold" else warm).insert(0, "compile")
    return HygieneReport(p.mode, p.env, tuple(cleared), p.kept, eviction, tuple(fresh), tuple(warm),
                         weights_residency(p.local_model_dir))
