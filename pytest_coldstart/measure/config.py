"""Config files read with the vocabularies only the layers above values know.

Budgets name phases; which phases exist is declared by the launchers
(``Launcher.phase_rules``), so loading budgets with full checking happens here,
above both.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from pytest_coldstart.launch.registry import all_phase_names, known_launchers
from pytest_coldstart.model import budgets
from pytest_coldstart.model.budgets import Budgets
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.registry import Registry, packaged_file
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
                                known_phases=(*all_phase_names(), *SCALEOUT_METRICS), known_launchers=known_launchers())


def budget_files(named: Path | str | None, default: Path | None) -> list[Path]:
    """The budget files in force, in layering order.

    * *named* None (option unset): the packaged budgets, then *default* (a repository's
      ``benchmarks/budgets.toml``) over them when it exists;
    * *named* "" : none at all;
    * *named* a path: that file alone (it must exist: a typo must not run without budgets).
    """
    if named is not None:
        if str(named) == "":
            return []
        named = Path(named)
        if not named.is_file():
            raise ConfigError(f"budgets file not found: {named} (named explicitly; leave the option unset for "
                              "the packaged budgets plus benchmarks/budgets.toml, or pass '' for none)")
        return [named]
    files = [packaged_file("budgets.toml")]
    if default is not None and default.is_file():
        files.append(default)
    return files


def load_budget_layers(files: Sequence[Path], *, registry: Registry | None = None) -> Budgets:
    """Budgets from *files*, later ones overriding earlier ones key by key per model x optimization.

    ``Budgets.path`` names every file that contributed, so a verdict says where its numbers came from.
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    for path in files:
        layer = load_budgets(path, registry=registry)
        for model, opts in layer.table.items():
            for opt, phases in opts.items():
                table.setdefault(model, {}).setdefault(opt, {}).update(phases)
    return Budgets(table, " + ".join(str(p) for p in files) if files else "none")


def compare_config_file(named: Path | None, registry_dir: Path | None) -> Path:
    """The compare thresholds in force: *named* (must exist), else the registry dir's, else the packaged file.

    The packaged file holds the thresholds the noise study chose; the built-in fallback of
    ``history.compare`` (+10 %) is never used silently.
    """
    if named is not None:
        if not named.is_file():
            raise ConfigError(f"compare config not found: {named} (named explicitly; leave it unset for "
                              f"{registry_dir / 'compare.toml' if registry_dir else 'the packaged thresholds'})")
        return named
    if registry_dir is not None and (registry_dir / "compare.toml").is_file():
        return registry_dir / "compare.toml"
    return packaged_file("compare.toml")
