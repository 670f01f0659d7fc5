"""What a cold start is of, and the small closed vocabularies around it.

One ``CaseKey`` identifies a case everywhere (runner, results, samples, asv,
reports); ``Case`` adds which repeat it is. ``ExitStatus`` and ``CachePolicy``
are ``str`` enums so they read and write as the same JSON strings as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar


class StrEnum(str, Enum):
    """``enum.StrEnum`` for Python 3.10: prints and formats as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ExitStatus(StrEnum):
    """How one start ended (``RunResult.exit_status``).

    The server's failures (``server_exited``, ``timeout``, ``unhealthy``) say
    something about the code under test: a head that fails where the base
    starts is a regression. The harness's (``interrupted``, ``harness_error``,
    ``preflight_failed``) say nothing about it: the comparison cannot be made
    (exit 2). ``error`` is what files from before this split carry; it is read
    as a harness failure.
    """

    OK = "ok"
    SERVER_EXITED = "server_exited"
    TIMEOUT = "timeout"
    UNHEALTHY = "unhealthy"
    INTERRUPTED = "interrupted"
    HARNESS_ERROR = "harness_error"
    PREFLIGHT_FAILED = "preflight_failed"
    ERROR = "error"

    @property
    def server_failure(self) -> bool:
        """A failure of the server under test (not of the harness, not an abort)."""
        return self in (ExitStatus.SERVER_EXITED, ExitStatus.TIMEOUT, ExitStatus.UNHEALTHY)

    @property
    def harness_failure(self) -> bool:
        return self not in (ExitStatus.OK,) and not self.server_failure


class CachePolicy(StrEnum):
    """Which caches a measured start finds (``cache =`` in optimizations.toml).

    * ``cold``: every cache fresh and empty, the model's pages evicted;
    * ``compile``: as cold, but the torch.compile cache pre-populated;
    * ``warm``: nothing cleared (an upper bound);
    * ``image``: as cold, but a container launcher's image is already local (``image_cached``).
    """

    COLD = "cold"
    COMPILE = "compile"
    WARM = "warm"
    IMAGE = "image"


@dataclass(frozen=True, order=True)
class CaseKey:
    """One benchmark case: a model started under one optimization by one launcher."""

    model: str
    optimization: str
    launcher: str = "vllm"

    @property
    def label(self) -> str:
        return f"{self.model} / {self.optimization} / {self.launcher}"

    def astuple(self) -> tuple[str, str, str]:
        return (self.model, self.optimization, self.launcher)


@dataclass(frozen=True)
class Case:
    """One cold start to measure: a case and which repeat of it."""

    model: str
    optimization: str
    launcher: str = "vllm"
    repeat_index: int = 0

    @property
    def key(self) -> CaseKey:
        return CaseKey(self.model, self.optimization, self.launcher)

    @property
    def id(self) -> str:
        return f"{self.model}-{self.optimization}-{self.launcher}-r{self.repeat_index}"


class _HasKey(Protocol):
    @property
    def key(self) -> CaseKey: ...


T = TypeVar("T", bound=_HasKey)


def group_by_case(items: Iterable[T]) -> dict[CaseKey, list[T]]:
    """Items (results, cases) by their ``CaseKey``, in order of first appearance."""
    groups: dict[CaseKey, list[T]] = {}
    for item in items:
        groups.setdefault(item.key, []).append(item)
    return groups
