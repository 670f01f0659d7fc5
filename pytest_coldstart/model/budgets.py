"""Per-phase time budgets: ``budgets.toml`` + a result -> checks and a verdict."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml
from pytest_coldstart.model.result import RunResult

TOTAL_KEYS = ("total_ready_s", "ttft_s")
#: Readiness beyond /health (measure/readiness.py): a warm_s budget in seconds; ``correct`` is not budgeted,
#: a start that served wrong tokens fails every budget check (fail closed).
WARM_KEY, CORRECT_KEY = "warm_s", "correct"
WILDCARD = "*"
#: ``[model."OPT@LAUNCHER"]`` (OPT may be ``*``) overrides ``[model.OPT]`` for one launcher:
#: a Ray scale-from-zero TTFT is a whole cold start, a vLLM TTFT is one request.
LAUNCHER_SEP = "@"

OK, OVER, UNBUDGETED, NOT_OBSERVED = "ok", "over", "unbudgeted", "not observed"


@dataclass(frozen=True)
class BudgetCheck:
    """One row of the budget table."""

    name: str
    budget_s: float | None
    measured_s: float | None
    status: str

    @property
    def over_by_s(self) -> float | None:
        if self.status != OVER or self.budget_s is None or self.measured_s is None:
            return None
        return round(self.measured_s - self.budget_s, 6)


@dataclass(frozen=True)
class Budgets:
    """Seconds per model x optimization x phase; ``"*"`` applies to every optimization."""

    table: dict[str, dict[str, dict[str, float]]]
    path: str = ""

    def for_case(self, model: str, optimization: str, launcher: str | None = None) -> dict[str, float]:
        per_model = self.table.get(model, {})
        merged = dict(per_model.get(WILDCARD, {}))
        merged.update(per_model.get(optimization, {}))
        if launcher:
            merged.update(per_model.get(f"{WILDCARD}{LAUNCHER_SEP}{launcher}", {}))
            merged.update(per_model.get(f"{optimization}{LAUNCHER_SEP}{launcher}", {}))
        return merged


def load_budgets(path: Path, *, known_models: Collection[str] | None = None,
                 known_optimizations: Collection[str] | None = None, known_phases: Collection[str] | None = None,
                 known_launchers: Collection[str] | None = None) -> Budgets:
    """Read *path* (missing file = no budgets) and reject names we don't know.

    The vocabularies are given by the caller (``measure.config.load_budgets``
    passes every registered launcher's phases): values know no launcher. A
    vocabulary left None is not checked.
    """
    if not path.exists():
        return Budgets({}, str(path))
    raw = load_toml(path, "budgets file")
    from pytest_coldstart.model import schemas  # lazily: pydantic only when a budgets file is read

    schemas.validate(schemas.BudgetsFile, raw, file=path, table_depth=2)  # typed, finite, > 0; names below
    known_keys = None if known_phases is None else tuple(dict.fromkeys((*known_phases, *TOTAL_KEYS, WARM_KEY)))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for model, per_model in raw.items():
        if known_models is not None and model not in known_models:
            raise ConfigError(f"{path}: unknown model [{model}]; known models: {', '.join(sorted(known_models))}")
        if not isinstance(per_model, dict):
            raise ConfigError(f"{path}: [{model}] must be a table of optimizations")
        for opt, phases in per_model.items():
            launcher = opt.partition(LAUNCHER_SEP)[2]
            if LAUNCHER_SEP in opt and known_launchers is not None and launcher not in known_launchers:
                raise ConfigError(f"{path}: [{model}.\"{opt}\"]: unknown launcher {launcher!r}; known: "
                                  f"{', '.join(known_launchers)}")
            base = opt.partition(LAUNCHER_SEP)[0]
            if base != WILDCARD and known_optimizations is not None and base not in known_optimizations:
                raise ConfigError(f"{path}: unknown optimization [{model}.{opt}]; known: "
                                  f"{', '.join(sorted(known_optimizations))} or \"*\"")
            if not isinstance(phases, dict):
                raise ConfigError(f"{path}: [{model}.{opt}] must be a table of phase = seconds")
            for name, seconds in phases.items():
                if known_keys is not None and name not in known_keys:
                    raise ConfigError(f"{path}: [{model}.{opt}] unknown phase {name!r}; "
                                      f"known: {', '.join(known_keys)}")
                if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
                    raise ConfigError(f"{path}: [{model}.{opt}] {name} = {seconds!r}; expected seconds > 0")
            table.setdefault(model, {})[opt] = {k: float(v) for k, v in phases.items()}
    return Budgets(table, str(path))


def check_budgets(budgets: Budgets, result: RunResult) -> list[BudgetCheck]:
    """A row per phase plus total and TTFT. A budgeted phase that was not
    observed is shown as such and does not fail: we cannot say it was slow."""
    limits = budgets.for_case(result.model, result.optimization, result.launcher)
    measured: dict[str, float | None] = dict(result.phase_durations())
    measured["total_ready_s"] = result.total_ready_s
    measured["ttft_s"] = result.ttft_s
    checks = []
    # The result's own phases in its order (a launcher has its own table), then the totals.
    names = [n for n in dict.fromkeys(p.name for p in result.phases) if n not in TOTAL_KEYS] + list(TOTAL_KEYS)
    for name in names:
        limit, value = limits.get(name), measured.get(name)
        if value is None:
            status = NOT_OBSERVED
        elif limit is None:
            status = UNBUDGETED
        else:
            status = OVER if value > limit else OK
        checks.append(BudgetCheck(name, limit, value, status))
    # Rows only where there is something to say, so results from before readiness levels read as before.
    if result.warm_s is not None or WARM_KEY in limits:
        limit, value = limits.get(WARM_KEY), result.warm_s
        status = NOT_OBSERVED if value is None else UNBUDGETED if limit is None else OVER if value > limit else OK
        checks.append(BudgetCheck(WARM_KEY, limit, value, status))
    if result.correct is False:
        checks.append(BudgetCheck(CORRECT_KEY, None, None, OVER))
    return checks


def breaches(checks: list[BudgetCheck]) -> list[BudgetCheck]:
    return [c for c in checks if c.status == OVER]
