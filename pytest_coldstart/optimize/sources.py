"""Weight sources on this machine or the hub: generated, local, hf (``s3`` is ``optimize.s3source``).

The one place a model's ``source`` becomes the ``--model`` reference vLLM
gets: the runner, the compile-cache key and the ``coldstart`` commands all
ask ``model_ref`` / ``local_checkpoint`` here.
"""

from __future__ import annotations

from pathlib import Path

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.paths import under
from pytest_coldstart.model.registry import ModelSpec, split_source
from pytest_coldstart.optimize import tinymodel
from pytest_coldstart.optimize.base import SourceStrategy, StartContext, WeightSource

#: A local checkpoint has nothing to fetch: never wait on a hub that isn't there.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1"}


def generated_dir(workdir: Path, name: str, *, make: bool = True) -> Path:
    """Where the generated model *name* lives under *workdir* (generated on first use)."""
    path = under(workdir / "models", name, what="generated model name").resolve()
    if make and not tinymodel.is_tiny_model(path):
        tinymodel.make_tiny_model(path)
    return path


def local_checkpoint(model: ModelSpec, workdir: Path, source: str | None = None) -> Path | None:
    """The checkpoint directory of *source* (default: the model's own) when it is on this machine."""
    kind, ref = split_source(source or model.source)
    if kind == "generated":
        return generated_dir(workdir, ref)
    if kind == "local":
        return Path(ref).expanduser().resolve()
    return None


def source_revision(model: ModelSpec) -> int | None:
    """The generator's revision for a generated model (its bytes change with it), else None."""
    return tinymodel.TINY_MODEL_REVISION if split_source(model.source)[0] == "generated" else None


class GeneratedSource(SourceStrategy):
    """``generated:NAME``: the tiny Llama made on the spot (nothing downloaded)."""

    kind = "generated"

    def resolve(self, ctx: StartContext, ref: str) -> str:
        return str(generated_dir(ctx.workdir, ref))

    def prepare(self, ctx: StartContext, ref: str) -> WeightSource:
        path = generated_dir(ctx.workdir, ref)
        return WeightSource(self.kind, str(path), dict(OFFLINE_ENV), local_dir=path)


class LocalSource(SourceStrategy):
    """``local:PATH``: a checkpoint directory on this machine."""

    kind = "local"

    def resolve(self, ctx: StartContext, ref: str) -> str:
        return str(Path(ref).expanduser().resolve())

    def prepare(self, ctx: StartContext, ref: str) -> WeightSource:
        path = Path(ref).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"model directory missing for {ctx.model.name}: {path} has no config.json; "
                              "fix `source` in models.toml")
        return WeightSource(self.kind, str(path.resolve()), dict(OFFLINE_ENV), local_dir=path.resolve())


class HubSource(SourceStrategy):
    """``hf:ORG/NAME``: vLLM downloads the weights during the start, which is what a cold start is."""

    kind = "hf"

    def resolve(self, ctx: StartContext, ref: str) -> str:
        return ref

    def prepare(self, ctx: StartContext, ref: str) -> WeightSource:
        return WeightSource(self.kind, ref)
