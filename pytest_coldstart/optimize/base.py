"""The strategy interface: what an optimization is given and what it gives back.

An optimization (a row of ``optimizations.toml``) is carried out by two
strategies, picked from ``optimize.registry`` by the model's source kind and
the optimization's cache policy:

* a **weight source** (``generated``, ``local``, ``hf``, ``s3``) turns the
  model's ``source`` into the ``--model`` reference vLLM gets, plus env, and
  a record of what it did (e.g. "uploaded to S3");
* a **cache strategy** (``cold``, ``compile``, ``warm``) decides which caches
  the measured start finds; populating a compile cache needs an unmeasured
  start, which the runner lends as a ``Populate`` callback.

Both get a frozen ``StartContext`` and never see the runner: what they need
is in the context, what they contribute is in their return value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pytest_coldstart.model.case import CachePolicy, Case
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.registry import ModelSpec, OptimizationSpec
from pytest_coldstart.optimize.hygiene import HygienePlan

#: Progress note from a strategy ("populating the torch.compile cache ..."), shown while it works.
Say = Callable[[str], None]


@dataclass(frozen=True)
class StartContext:
    """Everything a strategy may know about the start it prepares, as plain values.

    :param workdir: the suite's scratch directory (absolute): generated models, caches.
    :param run_root: a fresh directory for this start only; removed after it.
    :param versions: ``vllm`` and ``torch`` versions the server will run (cache keys carry them).
    :param python: the interpreter servers and helper processes run with.
    """

    case: Case
    model: ModelSpec
    optimization: OptimizationSpec
    workdir: Path
    run_root: Path
    versions: Mapping[str, str | None]
    python: str
    clock: Clock
    say: Say = field(default=lambda _note: None)
    #: The launcher's own options (``--coldstart-docker-host``, ``--coldstart-docker-image``): a strategy that
    #: prepares a cache the launcher keeps (a container image) reads where it lives from them.
    launcher_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def engine_args(self) -> tuple[str, ...]:
        return self.model.engine_args + self.optimization.engine_args


@dataclass(frozen=True)
class WeightSource:
    """What a weight source contributes to a start.

    :param model_ref: the ``--model`` argument (a path, a hub id, an ``s3://`` URI).
    :param env: environment the server needs for this source (``HF_HUB_OFFLINE``, ...).
    :param local_dir: the checkpoint directory when it is on this machine (its pages get evicted).
    :param record: saved in the result's ``cache.weights_source`` (how the source was made ready).
    """

    kind: str
    model_ref: str
    env: Mapping[str, str] = field(default_factory=dict)
    local_dir: Path | None = None
    record: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PopulateOutcome:
    """What the runner's unmeasured populate start left: its log."""

    log_path: str


#: The runner's populate callback: one unmeasured start with these env overrides
#: (``VLLM_CACHE_ROOT`` pointing at the cache to fill).
Populate = Callable[[Mapping[str, str]], PopulateOutcome]


@dataclass(frozen=True)
class CachePlan:
    """What a cache strategy decided before anything ran.

    :param root: the ``VLLM_CACHE_ROOT`` the measured start gets.
    :param state: ``"cold"`` or ``"warm"`` once ready (the result's ``cache_state``).
    :param hygiene: what is made fresh and evicted (applied right before the measured start).
    :param record: the result's ``cache`` entries (policy, store, key, ...), JSON-able.
    :param launcher_options: merged over the run's launcher options for the measured start: what the
        launcher must keep (``docker_image_cache = "warm"``: the image stays local and is not pulled).
    """

    policy: CachePolicy
    root: Path
    state: str
    hygiene: HygienePlan
    record: Mapping[str, Any] = field(default_factory=dict)
    launcher_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def env(self) -> Mapping[str, str]:
        """What the server's environment gets: the cache roots (``VLLM_CACHE_ROOT``, ``HF_HUB_CACHE``, ...)."""
        return self.hygiene.env


class SourceStrategy(ABC):
    """Turns a model's ``source`` reference into what vLLM is started with."""

    kind: ClassVar[str] = ""

    @abstractmethod
    def resolve(self, ctx: StartContext, ref: str) -> str:
        """The ``--model`` reference for *ref*, with no side effect but making a generated model.

        vLLM hashes this string into its compile-cache path, so cache keys use it too.
        """

    @abstractmethod
    def prepare(self, ctx: StartContext, ref: str) -> WeightSource:
        """Make the weights ready for the start (generate, verify, upload) and say how."""


class CacheStrategy(ABC):
    """Decides which caches a measured start finds, and fills them if it must."""

    policy: ClassVar[CachePolicy]

    def refuses(self, launcher: str) -> str | None:
        """Why this policy cannot run under *launcher* (None: it can); ``plan`` raises it as a ConfigError."""
        del launcher
        return None

    @abstractmethod
    def plan(self, ctx: StartContext, source: WeightSource) -> CachePlan:
        """Decide the cache root and record, creating only directories."""

    def ready(self, ctx: StartContext, plan: CachePlan, populate: Populate) -> CachePlan:
        """Fill what the plan needs (a populate start, a fetch); default: nothing to do."""
        del ctx, populate
        return plan
