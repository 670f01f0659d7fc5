"""Config files read with the vocabularies only the layers above values know.

Budgets name phases; which phases exist is declared by the launchers
(``Launcher.phase_rules``), so loading budgets with full checking happens here,
above both.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from pytest_coldstart.launch.registry import KNOWN_LAUNCHERS, all_phase_names
from pytest_coldstart.model import budgets
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.registry import Registry
from pytest_coldstart.model.scaleout import SCALEOUT_METRICS, SCALEOUT_OPTIMIZATION


def load_budgets(path: Path, *, registry: Registry | None = None, known_models: Collection[str] | None = None,
                 known_optimizations: Collection[str] | None = None) -> Budgets:
    """``model.budgets.load_budgets`` checking phase and launcher names against every registered launcher,
    and model and optimization names against *registry* (or the given names)."""
    if registry is not None:
        known_models = known_models or set(registry.models)
        known_optimizations = known_optimizations or set(registry.optimizations)
    if known_optimizations is not None:  # the scale-out benchmark's budgets: [MODEL."scaleout@ray-serve"]
        known_optimizations = {*known_optimizations, SCALEOUT_OPTIMIZATION}
    return budgets.load_budgets(path, known_models=known_models, known_optimizations=known_optimizations,
                                known_phases=(*all_phase_names(), *SCALEOUT_METRICS), known_launchers=KNOWN_LAUNCHERS)
