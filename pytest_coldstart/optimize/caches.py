"""Cache policies as strategies: ``cold``, ``compile`` (local or S3 store) and ``warm``.

* ``cold``: a fresh, empty ``VLLM_CACHE_ROOT`` in the start's own scratch dir.
* ``compile``: a ``VLLM_CACHE_ROOT`` pre-populated by one unmeasured start with
  the same model, args, launcher and vLLM/torch (``compile_cache.make_key``),
  kept locally under the workdir or, when the model has ``compile_cache_uri``
  and the AWS chain has credentials, fetched whole from S3 into a fresh root.
  A local cache is used only once complete (``.complete`` written last).
* ``warm``: as ``compile`` with the local store, but nothing else is cleared.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.files import atomic_write_text
from pytest_coldstart.model.paths import remove_quietly, under
from pytest_coldstart.optimize import compile_cache as cc
from pytest_coldstart.optimize import hygiene, s3
from pytest_coldstart.optimize.base import CachePlan, CacheStrategy, Populate, StartContext, WeightSource
from pytest_coldstart.optimize.sources import source_revision

STATE_COLD, STATE_WARM = "cold", "warm"


def compile_key(ctx: StartContext, model_ref: str) -> cc.CacheKey:
    """The key of the compile cache a start of ``ctx.case`` with *model_ref* would use (local and S3)."""
    model, opt = ctx.model, ctx.optimization
    return cc.make_key(model.name, model_ref=model_ref, engine_args=ctx.engine_args,
                       tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
                       assets_dir=str(hygiene.assets_dir_for(ctx.workdir, model.name, opt.name)),
                       vllm=ctx.versions.get("vllm"), torch=ctx.versions.get("torch"), launcher=ctx.case.launcher,
                       source_revision=source_revision(model))


def local_cache_dir(ctx: StartContext, key: cc.CacheKey) -> Path:
    """Where the local store keeps the compile cache of *key*."""
    name = f"{ctx.model.name}-{ctx.optimization.name}-{key.digest[:12]}"
    return under(ctx.workdir / "cache" / "compile", name, what="model and optimization").resolve()


def root_env(policy: CachePolicy, root: Path) -> dict[str, str]:
    """Env that points a start at the cache *root* (Triton's dir follows it unless warm)."""
    env = {"VLLM_CACHE_ROOT": str(root)}
    if policy != CachePolicy.WARM:
        env["TRITON_CACHE_DIR"] = str(root / "triton_cache")
    return env


def _plan(ctx: StartContext, source: WeightSource, policy: CachePolicy, root: Path, state: str,
          record: dict[str, Any]) -> CachePlan:
    plan = hygiene.plan(policy, compile_root=root, run_root=ctx.run_root, local_model_dir=source.local_dir,
                        assets_dir=hygiene.assets_dir_for(ctx.workdir, ctx.model.name, ctx.optimization.name))
    record = {"policy": str(policy), **({"weights_source": dict(source.record)} if source.record else {}), **record,
              "vllm_cache_root": str(root)}
    return CachePlan(policy, root, state, plan, record)


class ColdCache(CacheStrategy):
    policy = CachePolicy.COLD

    def plan(self, ctx: StartContext, source: WeightSource) -> CachePlan:
        return _plan(ctx, source, self.policy, ctx.run_root / "vllm_cache", STATE_COLD, {})


class CompileCache(CacheStrategy):
    policy = CachePolicy.COMPILE

    def plan(self, ctx: StartContext, source: WeightSource) -> CachePlan:
        key = compile_key(ctx, source.model_ref)
        store, why = cc.choose_store(ctx.model.compile_cache_uri)
        record: dict[str, Any] = {"store": store, "store_reason": why}
        root = local_cache_dir(ctx, key)
        if store == "s3":  # the measured start gets what S3 returns, in a fresh root
            root = ctx.run_root / "vllm_cache"
            record.update(uri=ctx.model.compile_cache_uri, key=dataclasses.asdict(cc.require_versions(key)))
        return _plan(ctx, source, self.policy, root, STATE_COLD, record)

    def ready(self, ctx: StartContext, plan: CachePlan, populate: Populate) -> CachePlan:
        if plan.record.get("store") == "s3":
            return self._fetch(ctx, plan, populate)
        record = dict(plan.record)
        record["populated"] = populate_local(ctx, plan.root, self.policy, populate)
        return dataclasses.replace(plan, state=STATE_WARM, record=record)

    def _fetch(self, ctx: StartContext, plan: CachePlan, populate: Populate) -> CachePlan:
        """Fill the run's fresh root from S3; on a miss populate once, push, fetch.

        The measured start always runs on what S3 returned, never on a local leftover.
        """
        record = dict(plan.record)
        key = cc.CacheKey(**record["key"])
        base = s3.parse_uri(str(record["uri"]))
        client = s3.make_client()
        plan.root.parent.mkdir(parents=True, exist_ok=True)
        result = cc.fetch(client, key, base, plan.root, clock=ctx.clock)
        if not result.hit:
            record["first_fetch"] = result.to_record()
            ctx.say(f"compile cache miss on S3 ({result.reason}); populating and pushing it")
            staging = under(ctx.workdir / "cache" / "s3-populate", key.digest)
            populate_local(ctx, staging, self.policy, populate)
            pushed = cc.push(client, staging, key, base, clock=ctx.clock)
            record["pushed"] = {k: pushed[k] for k in ("location", "archive_bytes", "push_s")}
            remove_quietly(ctx.workdir, staging)
            result = cc.fetch(client, key, base, plan.root, clock=ctx.clock)
            if not result.hit:
                raise s3.S3Error(f"pushed the compile cache to {result.location} but could not fetch it back: "
                                 f"{result.reason}")
        record.update(result.to_record())
        return dataclasses.replace(plan, state=STATE_WARM, record=record)


class WarmCache(CompileCache):
    """Everything warm: the compile cache populated, HF and page caches kept (an upper bound)."""

    policy = CachePolicy.WARM

    def plan(self, ctx: StartContext, source: WeightSource) -> CachePlan:
        key = compile_key(ctx, source.model_ref)
        record = {"store": "local", "store_reason": "the warm policy keeps every cache local"}
        return _plan(ctx, source, self.policy, local_cache_dir(ctx, key), STATE_COLD, record)


def populate_local(ctx: StartContext, root: Path, policy: CachePolicy, populate: Populate, *,
                   force: bool = False) -> dict[str, Any]:
    """Fill *root* with one unmeasured start unless it is already complete; returns its marker.

    A cache is used only if ``.complete`` exists; an interrupted populate
    leaves none, so it is wiped and redone rather than half-used.
    """
    marker = root / cc.COMPLETE
    if marker.is_file() and not force:
        return json.loads(marker.read_text())
    remove_quietly(ctx.workdir, root)  # only ever a cache under the workdir
    root.mkdir(parents=True)
    ctx.say("populating the torch.compile cache (unmeasured start)")
    outcome = populate(root_env(policy, root))
    meta = {"created_at": ctx.clock.wall().isoformat(), "vllm": ctx.versions.get("vllm"),
            "torch": ctx.versions.get("torch"), "populate_log": outcome.log_path}
    atomic_write_text(marker, json.dumps(meta, indent=2))
    return meta
