"""``coldstart s3 upload-model | shard`` and ``coldstart cache push | pull``: S3 set-up by hand.

Endpoint and credentials come from the standard AWS chain; they are never printed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pytest_coldstart.measure.environment import software_versions
from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.flags import checked
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.optimize import compile_cache as cc
from pytest_coldstart.optimize import s3
from pytest_coldstart.optimize.s3source import SHARD_FORMAT, shard_and_upload, upload_model
from pytest_coldstart.optimize.shard import ShardSpec
from pytest_coldstart.optimize.sources import local_checkpoint


def _print_upload(report: s3.UploadReport) -> None:
    print(f"{report.uri}: uploaded {len(report.uploaded)} file(s) ({report.bytes_uploaded} bytes), "
          f"skipped {len(report.skipped)} unchanged, deleted {len(report.deleted)} stale; manifest written")


def _cmd_upload(args: argparse.Namespace) -> int:
    client = s3.make_client()
    uri = s3.parse_uri(args.uri)
    if args.create_bucket:
        s3.ensure_bucket(client, uri.bucket)
    report = upload_model(client, Path(args.model_dir), uri, progress=print)
    _print_upload(report)
    return 0


def _cmd_shard(args: argparse.Namespace) -> int:
    registry = load_registry(Path(args.registry))
    model = registry.model(args.model)
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        found = local_checkpoint(model, Path(args.workdir))
        if found is None:
            raise ConfigError(f"{model.name} comes from {model.source}; pass --model-dir with a local copy")
        model_dir = found
    tp = args.tensor_parallel_size or model.tensor_parallel_size
    client = s3.make_client()
    uri = s3.parse_uri(args.uri)
    if args.create_bucket:
        s3.ensure_bucket(client, uri.bucket)
    spec = ShardSpec(model_dir.resolve(), tp, model.max_model_len, engine_args=model.engine_args)
    vllm = software_versions().get("vllm")
    report = shard_and_upload(client, spec, uri, workdir=Path(args.workdir), env=dict(os.environ), progress=print,
                              meta={"model": model.name, "shard_format": SHARD_FORMAT, "vllm": vllm})
    _print_upload(report)
    return 0


def _case_key(args: argparse.Namespace) -> tuple[cc.CacheKey, Path]:
    """The S3 key and local directory of the compile cache a benchmark start of the case would use."""
    root = Path.cwd()
    settings = Settings(registry_dir=Path(args.registry), results_dir=root / "results",
                        workdir=Path(args.workdir).resolve(), repo_dir=root)
    runner = ColdStartRunner(settings, load_registry(settings.registry_dir))
    key, local = runner.compile_cache_key(Case(args.model, args.optimization, args.launcher))
    return cc.require_versions(key), local  # on S3 the versions name the series: both must be known


def _cmd_push(args: argparse.Namespace) -> int:
    key, local = _case_key(args)
    root = Path(args.cache_dir) if args.cache_dir else local
    if not (root / cc.COMPLETE).is_file() and not args.cache_dir:
        raise ConfigError(f"no complete local compile cache at {root}; run the benchmark once with "
                          f"{cc.STORE_ENV}=local (`pytest benchmarks -m coldstart --model {args.model} --optimization "
                          f"{args.optimization}`), or pass --cache-dir VLLM_CACHE_ROOT")
    meta = cc.push(s3.make_client(), root, key, s3.parse_uri(args.uri))
    print(f"pushed {root} ({meta['archive_bytes']} bytes) to {meta['location']} in {meta['push_s']:.1f} s")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    key, local = _case_key(args)
    dest = Path(args.cache_dir) if args.cache_dir else local
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = cc.fetch(s3.make_client(), key, s3.parse_uri(args.uri), dest)
    if not result.hit:
        print(f"coldstart cache pull: miss: {result.reason} (at {result.location}); nothing was written")
        return 1
    print(f"pulled {result.location} into {dest} ({result.bytes} bytes, {result.duration_s:.1f} s)")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("s3", help="put model weights on S3 for the Run:ai streamer optimizations",
                       description="Endpoint and credentials come from the standard AWS chain "
                                   "(AWS_ENDPOINT_URL, AWS_PROFILE, AWS_ACCESS_KEY_ID/...); they are never "
                                   "printed. Uploads skip unchanged files and write a manifest last, so an "
                                   "interrupted upload is never used.")
    s3_sub = p.add_subparsers(dest="s3_command", required=True, metavar="S3_COMMAND")
    up = s3_sub.add_parser("upload-model", help="upload a local model directory (boto3 managed transfer)")
    up.add_argument("model_dir", metavar="MODEL_DIR")
    up.add_argument("uri", metavar="S3_URI", help="s3://BUCKET/PREFIX")
    up.add_argument("--create-bucket", action="store_true", help="create the bucket if it does not exist")
    up.set_defaults(func=_cmd_upload)
    sh = s3_sub.add_parser("shard", help="save vLLM's sharded state for the model's TP size, then upload it",
                        description="Starts an offline vLLM engine at the model's tensor-parallel size (from "
                                    "models.toml, or --tensor-parallel-size), writes one safetensors file set per "
                                    "rank plus config/tokenizer, and uploads them for "
                                    "--load-format runai_streamer_sharded.")
    sh.add_argument("model", metavar="MODEL", help="a model name from models.toml")
    sh.add_argument("uri", metavar="S3_URI", help="s3://BUCKET/PREFIX")
    sh.add_argument("--model-dir", default="", help="local checkpoint to shard (default: the model's local source)")
    sh.add_argument("--tensor-parallel-size", type=checked("count0", "4"), default=0,
                    help="default: the model's, from models.toml")
    sh.add_argument("--registry", default="benchmarks", help="directory with models.toml (default: benchmarks)")
    sh.add_argument("--workdir", default=".coldstart", help="scratch directory (default: .coldstart)")
    sh.add_argument("--create-bucket", action="store_true", help="create the bucket if it does not exist")
    sh.set_defaults(func=_cmd_shard)

    p = sub.add_parser("cache", help="push or pull the vLLM torch.compile cache to/from S3",
                       description="The cache key carries the model, its engine args and the vLLM and "
                                   "torch versions: a cache from another version is never pulled.")
    cache_sub = p.add_subparsers(dest="cache_command", required=True, metavar="CACHE_COMMAND")
    for name, func, text in (("push", _cmd_push, "upload a local VLLM_CACHE_ROOT under the case's key"),
                             ("pull", _cmd_pull, "download the case's cache (exit 1 on a miss, writing nothing)")):
        c = cache_sub.add_parser(name, help=text)
        c.add_argument("uri", metavar="S3_URI", help="s3://BUCKET/PREFIX, the cache base")
        c.add_argument("--model", required=True, help="a model name from models.toml")
        c.add_argument("--optimization", default="compile_cache", help="default: compile_cache")
        c.add_argument("--launcher", default="vllm", help="the launcher the cache is for (default: vllm)")
        c.add_argument("--cache-dir", default="", help="the VLLM_CACHE_ROOT to push from / pull into "
                       "(default: the suite's local compile cache for the case)")
        c.add_argument("--registry", default="benchmarks", help="default: benchmarks")
        c.add_argument("--workdir", default=".coldstart", help="default: .coldstart")
        c.set_defaults(func=func)
