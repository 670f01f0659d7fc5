"""A model's weights on S3, ready for the Run:ai streamer: upload, shard, verify.

``runai_streamer`` streams the model's own safetensors from ``s3://``;
``runai_streamer_sharded`` streams per-rank files that vLLM's
``save_sharded_state`` wrote for the model's tensor-parallel size. Before a
start the prefix must hold a *complete* upload (``s3.require_complete``): an
interrupted upload or shard is refused with the command that fixes it. The
generated tiny model is uploaded (or sharded and uploaded) on the spot, the
way it is generated on the spot; a real model is uploaded once, deliberately,
with ``coldstart s3 upload-model`` / ``coldstart s3 shard``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.process import harness_owns, stop_group
from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.registry import S3_ADVICE, ModelSpec, is_relative_s3, split_source
from pytest_coldstart.optimize import s3, tinymodel
from pytest_coldstart.optimize.base import SourceStrategy, StartContext, WeightSource
from pytest_coldstart.optimize.shard import SHARD_FORMAT, ShardSpec, save_sharded
from pytest_coldstart.optimize.sources import local_checkpoint

KIND_MODEL = "model"
KIND_SHARDED = "sharded"


def load_format(engine_args: Sequence[str]) -> str | None:
    """The ``--load-format`` value in *engine_args* (``--load-format X`` or ``--load-format=X``)."""
    args = list(engine_args)
    for i, arg in enumerate(args):
        if arg == "--load-format" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--load-format="):
            return arg.split("=", 1)[1]
    return None


def source_kind(engine_args: Sequence[str]) -> str:
    # vLLM 0.8.5+: runai_streamer_sharded = ShardedStateLoader over the Run:ai streamer.
    return KIND_SHARDED if load_format(engine_args) in ("runai_streamer_sharded", "sharded_state") else KIND_MODEL


def _next_step(kind: str, model: str, uri: str) -> str:
    if kind == KIND_SHARDED:
        return f"Run `coldstart s3 shard {model} {uri}` to (re)write it."
    return f"Run `coldstart s3 upload-model MODEL_DIR {uri}` to (re)upload it."


@dataclass(frozen=True)
class SourceReport:
    """How the S3 source of one start was made ready."""

    uri: str
    kind: str
    action: str  # "verified" | "uploaded" | "sharded+uploaded"
    files: int
    bytes_total: int
    uploaded_files: int = 0
    duration_s: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return {"uri": self.uri, "kind": self.kind, "action": self.action, "files": self.files,
                "bytes": self.bytes_total, "uploaded_files": self.uploaded_files, "duration_s": self.duration_s}


def _total(manifest: dict[str, Any]) -> tuple[int, int]:
    files = manifest["files"]
    return len(files), sum(int(e.get("size", 0)) for e in files.values())


def upload_model(client: Any, model_dir: Path, uri: s3.S3Uri, *, meta: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> s3.UploadReport:
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} is not a model directory (no config.json)")
    if not list(model_dir.glob("*.safetensors")):
        raise ConfigError(f"{model_dir} has no *.safetensors; the Run:ai streamer reads safetensors only")
    return s3.upload_tree(client, model_dir, uri, kind=KIND_MODEL, meta=meta, progress=progress)


def shard_and_upload(client: Any, spec: ShardSpec, uri: s3.S3Uri, *, workdir: Path, env: dict[str, str],
                     python: str = sys.executable, meta: dict[str, Any] | None = None,
                     progress: Callable[[str], None] | None = None) -> s3.UploadReport:
    """Save the sharded state locally (atomic dir), then upload it with its manifest last."""
    say = progress or (lambda _m: None)
    out = workdir / "shards" / f"{spec.model_dir.name}-tp{spec.tensor_parallel_size}"
    say(f"saving the sharded state of {spec.model_dir} at TP {spec.tensor_parallel_size} (an offline vLLM engine)")
    save_sharded(spec, out, env=env, log_path=workdir / "shards" / f"{out.name}.log", python=python)
    return s3.upload_tree(client, out, uri, kind=KIND_SHARDED,
                          meta={"tensor_parallel_size": spec.tensor_parallel_size, **(meta or {})}, progress=progress)


def ensure_source(model: ModelSpec, engine_args: Sequence[str], uri_text: str, *, generated_dir: Path | None,
                  workdir: Path, env: dict[str, str], python: str = sys.executable, clock: Clock | None = None,
                  vllm_version: str | None = None, progress: Callable[[str], None] | None = None) -> SourceReport:
    """Make sure *uri_text* holds a complete upload this start can stream.

    :param generated_dir: the locally generated checkpoint when the model is generated
        (then a missing or outdated upload is redone here); None for real models.
    :param vllm_version: the vLLM that will load it; shards hold vLLM's internal parameter
        names (fused qkv_proj, ...), so shards saved by another vLLM are refused.
    """
    clock = clock or SystemClock()
    started = clock.monotonic_s()
    kind = source_kind(engine_args)
    uri = s3.parse_uri(uri_text)
    client = s3.make_client()
    manifest = s3.read_manifest(client, uri)
    if generated_dir is not None:
        digest = tinymodel.checkpoint_digest(generated_dir)
        fresh = (manifest is not None and manifest.get("kind") == kind and manifest.get("source_digest") == digest
                 and (kind == KIND_MODEL or (manifest.get("tensor_parallel_size") == model.tensor_parallel_size
                                             and manifest.get("shard_format") == SHARD_FORMAT
                                             and manifest.get("vllm") == vllm_version)))
        if not fresh:
            meta: dict[str, Any] = {"model": model.name, "source_digest": digest}
            if kind == KIND_SHARDED:
                meta.update(shard_format=SHARD_FORMAT, vllm=vllm_version)
                spec = ShardSpec(generated_dir, model.tensor_parallel_size, model.max_model_len,
                                 engine_args=model.engine_args)
                report = shard_and_upload(client, spec, uri, workdir=workdir, env=env, python=python, meta=meta,
                                          progress=progress)
                action = "sharded+uploaded"
            else:
                report = upload_model(client, generated_dir, uri, meta=meta, progress=progress)
                action = "uploaded"
            files, size = _total(report.manifest)
            return SourceReport(str(uri), kind, action, files, size, len(report.uploaded),
                                round(clock.monotonic_s() - started, 3))
    manifest = s3.require_complete(client, uri, kind=kind, next_step=_next_step(kind, model.name, str(uri)))
    if kind == KIND_SHARDED and manifest.get("tensor_parallel_size") != model.tensor_parallel_size:
        raise s3.S3Error(f"{uri} was sharded for TP {manifest.get('tensor_parallel_size')}, but {model.name} runs at "
                         f"TP {model.tensor_parallel_size}. {_next_step(kind, model.name, str(uri))}")
    if kind == KIND_SHARDED and vllm_version and manifest.get("vllm") not in (None, vllm_version):
        raise s3.S3Error(f"{uri} was sharded by vLLM {manifest.get('vllm')}; this is vLLM {vllm_version}, whose "
                         f"parameter layout may differ. {_next_step(kind, model.name, str(uri))}")
    files, size = _total(manifest)
    return SourceReport(str(uri), kind, "verified", files, size, 0, round(clock.monotonic_s() - started, 3))


class S3Source(SourceStrategy):
    """``s3://BUCKET/PREFIX``: weights streamed by the Run:ai streamer, the prefix made ready first."""

    kind = "s3"

    def resolve(self, ctx: StartContext, ref: str) -> str:
        return ref

    def prepare(self, ctx: StartContext, ref: str) -> WeightSource:
        model, optimization = ctx.model, ctx.optimization.name
        if is_relative_s3(ref):
            raise ConfigError(f"{model.name} under {optimization} streams its weights from {ref}, under the run's "
                              f"S3 location, and none is configured: {S3_ADVICE}")
        if load_format(ctx.engine_args) not in ("runai_streamer", "runai_streamer_sharded"):
            raise ConfigError(f"{model.name}: the {optimization} source is {ref}, but only --load-format "
                              "runai_streamer or runai_streamer_sharded can read s3:// weights; fix models.toml or "
                              "optimizations.toml")
        generated = None
        if split_source(model.source)[0] == "generated":
            generated = local_checkpoint(model, ctx.workdir)
        work = ctx.workdir.resolve()
        env = {**os.environ, **dict(model.env), "VLLM_CACHE_ROOT": str(work / "cache" / "shard"), "HF_HUB_OFFLINE": "1"}
        report = ensure_source(model, ctx.engine_args, ref, generated_dir=generated, workdir=work, env=env,
                               python=ctx.python, clock=ctx.clock, vllm_version=ctx.versions.get("vllm"),
                               progress=ctx.say)
        # Nothing comes from the hub: vLLM mirrors config + tokenizer from the bucket.
        # RUNAI_STREAMER_LOG_TO_STDERR=1 makes runai-model-streamer (0.15+) print its
        # "Overall time to stream" summary, which vLLM's logging config drops otherwise.
        return WeightSource(self.kind, ref, {"HF_HUB_OFFLINE": "1", "RUNAI_STREAMER_LOG_TO_STDERR": "1"},
                            record=report.to_record())


#: The bucket the embedded endpoint serves; ``s3:NAME`` sources of generated models bind under it.
EMBEDDED_LOCATION = "s3://coldstart-embedded"
_EMBEDDED_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                      "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED",
                      "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")


def moto_server_binary(python: str = sys.executable) -> str | None:
    """``moto_server`` beside *python* (a venv), else on PATH; None when moto[server] is not installed."""
    local = Path(python).parent / "moto_server"
    return str(local) if local.exists() else shutil.which("moto_server")


class EmbeddedS3:
    """An S3 endpoint of its own for the CPU lane: ``moto_server`` on loopback, for one session.

    With no S3 location configured, the generated tiny model's S3 optimizations stream from here:
    the endpoint is started on first use, ``EMBEDDED_LOCATION``'s bucket created, and the AWS
    variables of this process pointed at it (random credentials, instance metadata and the user's
    AWS files off) so that boto3 here and the vLLM server (which inherits the environment) both
    reach it. ``stop()`` restores the environment and stops the server (own process group: TERM,
    grace, KILL). The tiny model is uploaded by ``ensure_source`` like on any endpoint.
    """

    def __init__(self, log_path: Path, *, python: str = sys.executable, start_timeout_s: float = 30.0) -> None:
        self.log_path = log_path
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.url: str | None = None
        self._proc: Any = None
        self._saved: dict[str, str | None] = {}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> str:
        """Start the endpoint (idempotent); returns its location (``EMBEDDED_LOCATION``)."""
        if self.running:
            return EMBEDDED_LOCATION
        binary = moto_server_binary(self.python)
        if binary is None:
            raise ConfigError("the embedded S3 endpoint of the CPU lane needs moto's server: "
                              "pip install 'pytest-coldstart[cpu]' (moto[server]); or " + S3_ADVICE)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        harness_owns(self._proc.pid)  # shared by the session's starts: none of them may stop it
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(f"the embedded S3 endpoint (moto_server) did not start within "
                                      f"{self.start_timeout_s:.0f} s; its log: {self.log_path}") from None
                time.sleep(0.2)
        self.url = f"http://127.0.0.1:{port}"
        env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
               "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30), "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
               "AWS_CONFIG_FILE": os.devnull}
        self._saved = {k: os.environ.get(k) for k in _EMBEDDED_ENV_KEYS}
        for key in _EMBEDDED_ENV_KEYS:
            os.environ.pop(key, None)
        os.environ.update(env)
        s3.ensure_bucket(s3.make_client(), s3.parse_uri(EMBEDDED_LOCATION).bucket)
        return EMBEDDED_LOCATION

    def stop(self, grace_s: float = 5.0) -> None:
        """Restore the AWS environment and stop the server; safe to call twice."""

        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = {}
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)))
