"""S3 transfers for model checkpoints, sharded checkpoints and compile caches.

boto3 only, with everything from the standard AWS chain: the endpoint from
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``, or a profile's
``endpoint_url``), credentials from env, ``AWS_PROFILE`` or instance roles,
retries from botocore's retry modes (``AWS_RETRY_MODE``, ``AWS_MAX_ATTEMPTS``;
``standard`` with 5 attempts unless set). Nothing here prints a credential:
errors name the endpoint and the object, never a key.

A prefix is *complete* only when its manifest (written last) lists every
object with its size and sha256; an upload starts by deleting the manifest, so
an interrupted upload leaves a prefix that readers refuse.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

from pytest_coldstart.model.errors import ColdstartError, ConfigError
from pytest_coldstart.model.files import atomic_path
from pytest_coldstart.model.redact import Redactor

MANIFEST = ".coldstart-manifest.json"
SHA_META = "sha256"  # object metadata key (x-amz-meta-sha256)
S3_HINT = ("S3 comes from the standard AWS chain: set AWS_ENDPOINT_URL for an S3-compatible endpoint "
           "(MinIO, moto_server, ...), and AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY or AWS_PROFILE for "
           "credentials; see the docs: How-to > S3 optimizations")
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
                   "ServiceUnavailable", "InternalError", "503", "500", "502", "504"}


_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


class S3Error(ColdstartError):
    """An S3 operation failed; the message says what to do next."""


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def is_not_found(exc: BaseException, *, bucket_too: bool = False) -> bool:
    """True when *exc* says the object (or, with *bucket_too*, the bucket) is not there."""
    code = error_code(exc)
    return code in _NOT_FOUND_CODES and (bucket_too or code != "NoSuchBucket")


@dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/prefix`` without a trailing slash."""

    bucket: str
    prefix: str = ""

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def child(self, name: str) -> S3Uri:
        return S3Uri(self.bucket, self.key(name.strip("/")))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_uri(text: str) -> S3Uri:
    if not text.startswith("s3://"):
        raise ConfigError(f"not an S3 URI: {text!r}; expected s3://BUCKET/PREFIX")
    bucket, _, prefix = text[5:].partition("/")
    if not bucket:
        raise ConfigError(f"S3 URI {text!r} has no bucket; expected s3://BUCKET/PREFIX")
    return S3Uri(bucket, prefix.strip("/"))


RetryMode = Literal["legacy", "standard", "adaptive"]
_RETRY_MODES: dict[str, RetryMode] = {"legacy": "legacy", "standard": "standard", "adaptive": "adaptive"}


class RetryConfig(TypedDict, total=False):
    """botocore's ``Config(retries=...)`` (its keys, as botocore-stubs declare them)."""

    mode: RetryMode
    total_max_attempts: int
    max_attempts: int


def retry_config() -> RetryConfig:
    """botocore retry settings: the user's AWS_RETRY_MODE / AWS_MAX_ATTEMPTS, else standard x5."""
    raw_mode = os.environ.get("AWS_RETRY_MODE", "standard")
    mode = _RETRY_MODES.get(raw_mode)
    if mode is None:  # botocore would refuse it at the first request, deep inside a start
        raise ConfigError(f"AWS_RETRY_MODE={raw_mode!r} is not a retry mode; use one of {', '.join(_RETRY_MODES)}")
    try:
        attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", "5"))
    except ValueError:
        raise ConfigError(f"AWS_MAX_ATTEMPTS={os.environ['AWS_MAX_ATTEMPTS']!r} is not a number") from None
    return {"mode": mode, "total_max_attempts": attempts}


def _require_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigError("the S3 optimizations need boto3 and the Run:ai streamer: "
                          "pip install -e '.[s3]'") from None
    return boto3


def _session_and_credentials() -> tuple[Any, Any]:
    boto3 = _require_boto3()
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session()
        return session, session.get_credentials()
    except (BotoCoreError, ValueError) as exc:
        msg = Redactor.from_env(os.environ).redact(str(exc))
        raise S3Error(f"resolving AWS credentials failed: {type(exc).__name__}: {msg}. {S3_HINT}") from None


def has_credentials() -> bool:
    """True when the standard AWS chain resolves credentials (values never read out)."""
    return _session_and_credentials()[1] is not None


def make_client(*, connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0) -> Any:
    """An S3 client from the standard chain; fails with a hint when no credentials resolve."""
    from botocore.config import Config

    session, credentials = _session_and_credentials()
    if credentials is None:
        raise S3Error(f"no AWS credentials found. {S3_HINT}")
    config = Config(retries=retry_config(), connect_timeout=connect_timeout_s, read_timeout=read_timeout_s)
    return session.client("s3", config=config)


def endpoint_of(client: Any) -> str:
    """The endpoint URL without any userinfo (safe to print)."""
    parts = urlsplit(str(client.meta.endpoint_url))
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def explain(exc: BaseException, action: str, client: Any) -> S3Error:
    """Turn a botocore / boto3 exception into an S3Error with a next step."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    where = endpoint_of(client)
    root: BaseException | None = exc
    while root is not None and not isinstance(root, (ClientError, BotoCoreError)):
        root = root.__cause__ or root.__context__
    cause = root or exc
    retries = retry_config()
    if isinstance(cause, NoCredentialsError):
        msg = f"{action}: no AWS credentials found. {S3_HINT}"
    elif isinstance(cause, BotoConnectionError):
        msg = (f"{action}: cannot reach the S3 endpoint {where} ({type(cause).__name__}) after "
               f"{retries['total_max_attempts']} attempts. Is it running? The endpoint comes from AWS_ENDPOINT_URL "
               "or the profile's endpoint_url")
    elif isinstance(cause, ClientError):
        err = cause.response.get("Error", {})
        code = str(err.get("Code", "?"))
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        attempts = cause.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
        if code == "NoSuchBucket":
            msg = (f"{action}: bucket does not exist at {where}; create it (`coldstart s3 upload-model "
                   "--create-bucket ...`) or fix the s3:// URI")
        elif is_not_found(cause):
            msg = f"{action}: no such object at {where}"
        elif code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            msg = (f"{action}: access denied by {where} ({code}); check the credentials the AWS chain resolves "
                   "(values are not shown) and the bucket policy")
        elif code in _THROTTLE_CODES or (status or 0) >= 500:
            msg = (f"{action}: {where} kept answering {code} (HTTP {status}) through {attempts} attempts "
                   f"(retry mode {retries['mode']}); retry later, or raise AWS_MAX_ATTEMPTS")
        else:
            msg = f"{action}: {code} (HTTP {status}) from {where}: {err.get('Message', '')}"
    else:
        msg = f"{action}: {type(cause).__name__}: {cause}"
    return S3Error(Redactor.from_env(os.environ).redact(msg))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class UploadReport:
    """What an upload did; ``skipped`` files were already there with the same sha256."""

    uri: str
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    deleted: tuple[str, ...]
    bytes_uploaded: int
    manifest: dict[str, Any]


def _list_keys(client: Any, uri: S3Uri) -> dict[str, int]:
    """Key -> size for every object under ``uri/``."""
    found: dict[str, int] = {}
    paginator = client.get_paginator("list_objects_v2")
    prefix = f"{uri.prefix}/" if uri.prefix else ""
    for page in paginator.paginate(Bucket=uri.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = int(obj["Size"])
    return found


def _remote_sha(client: Any, bucket: str, key: str, size: int) -> str | None:
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    if int(head["ContentLength"]) != size:
        return None
    return head.get("Metadata", {}).get(SHA_META)


def upload_tree(client: Any, local_dir: Path, uri: S3Uri, *, kind: str, meta: dict[str, Any] | None = None,
                progress: Callable[[str], None] | None = None) -> UploadReport:
    """Sync *local_dir* to *uri* with boto3's managed transfer, manifest last.

    Unchanged files (same size and sha256 as the object's metadata) are
    skipped; objects under the prefix that *local_dir* lacks are deleted, so
    an old shard can never be picked up next to new ones.
    """
    from boto3.s3.transfer import TransferConfig

    say = progress or (lambda _msg: None)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    if not files:
        raise ConfigError(f"nothing to upload: {local_dir} has no files")
    transfer = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20, max_concurrency=8)
    entries: dict[str, dict[str, Any]] = {}
    uploaded, skipped = [], []
    sent = 0
    action = f"uploading {local_dir} to {uri}"
    try:
        # Invalidate first: from here until the new manifest lands, readers see "incomplete".
        client.delete_object(Bucket=uri.bucket, Key=uri.key(MANIFEST))
        existing = _list_keys(client, uri)
        for path in files:
            rel = path.relative_to(local_dir).as_posix()
            size, digest = path.stat().st_size, sha256_file(path)
            entries[rel] = {"size": size, "sha256": digest}
            key = uri.key(rel)
            if key in existing and _remote_sha(client, uri.bucket, key, size) == digest:
                skipped.append(rel)
                continue
            say(f"uploading {rel} ({size} bytes)")
            client.upload_file(str(path), uri.bucket, key, ExtraArgs={"Metadata": {SHA_META: digest}},
                               Config=transfer)
            uploaded.append(rel)
            sent += size
        wanted = {uri.key(rel) for rel in entries}
        extra = sorted(k for k in existing if k not in wanted and k != uri.key(MANIFEST))
        for key in extra:
            client.delete_object(Bucket=uri.bucket, Key=key)
        manifest = {"kind": kind, "files": entries, **(meta or {})}
        client.put_object(Bucket=uri.bucket, Key=uri.key(MANIFEST), Body=json.dumps(manifest, indent=2).encode(),
                          ContentType="application/json")
    except Exception as exc:
        if isinstance(exc, ColdstartError):
            raise
        raise explain(exc, action, client) from None
    prefix_len = len(uri.prefix) + 1 if uri.prefix else 0
    return UploadReport(str(uri), tuple(uploaded), tuple(skipped), tuple(k[prefix_len:] for k in extra), sent, manifest)


def read_manifest(client: Any, uri: S3Uri) -> dict[str, Any] | None:
    """The manifest under *uri*, or None when there is none (never uploaded, or interrupted)."""
    from botocore.exceptions import ClientError

    try:
        body = client.get_object(Bucket=uri.bucket, Key=uri.key(MANIFEST))["Body"].read()
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise explain(exc, f"reading the manifest of {uri}", client) from None
    except Exception as exc:
        raise explain(exc, f"reading the manifest of {uri}", client) from None
    try:
        data = json.loads(body)
    except ValueError:
        raise S3Error(f"{uri}/{MANIFEST} is not JSON; re-upload the prefix") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise S3Error(f"{uri}/{MANIFEST} has no file list; re-upload the prefix")
    return data


def require_complete(client: Any, uri: S3Uri, *, kind: str, next_step: str) -> dict[str, Any]:
    """The manifest of a complete upload of *kind* at *uri*, every object present at its size."""
    manifest = read_manifest(client, uri)
    if manifest is None:
        raise S3Error(f"{uri} holds no complete {kind} upload (no {MANIFEST}: never uploaded, or the upload "
                      f"was interrupted). {next_step}")
    if manifest.get("kind") != kind:
        raise S3Error(f"{uri} holds a {manifest.get('kind')!r} upload, not a {kind!r} one. {next_step}")
    try:
        present = _list_keys(client, uri)
    except Exception as exc:
        raise explain(exc, f"listing {uri}", client) from None
    for rel, entry in manifest["files"].items():
        size = present.get(uri.key(rel))
        if size != entry.get("size"):
            state = "missing" if size is None else f"{size} bytes, manifest says {entry.get('size')}"
            raise S3Error(f"{uri} is incomplete: {rel} is {state}. {next_step}")
    return manifest


def download_file(client: Any, uri: S3Uri, name: str, dest: Path, *, sha256: str | None = None) -> int:
    """Download object *name* under *uri* to *dest* atomically; verify sha256 if given."""
    with atomic_path(dest, mode=None, suffix=".part") as tmp:
        try:
            client.download_file(uri.bucket, uri.key(name), str(tmp))
        except Exception as exc:
            raise explain(exc, f"downloading {uri.child(name)}", client) from None
        if sha256 is not None and sha256_file(tmp) != sha256:
            raise S3Error(f"{uri.child(name)} does not match its recorded sha256 (corrupt or overwritten); "
                          "it was not used")
    return dest.stat().st_size


def put_json(client: Any, uri: S3Uri, name: str, data: dict[str, Any]) -> None:
    try:
        client.put_object(Bucket=uri.bucket, Key=uri.key(name), Body=json.dumps(data, indent=2).encode(),
                          ContentType="application/json")
    except Exception as exc:
        raise explain(exc, f"writing {uri.child(name)}", client) from None


def ensure_bucket(client: Any, bucket: str) -> bool:
    """Create *bucket* if absent (for endpoints we own, e.g. the test bed); True if created."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if not is_not_found(exc, bucket_too=True):
            raise explain(exc, f"checking bucket {bucket}", client) from None
    except Exception as exc:
        raise explain(exc, f"checking bucket {bucket}", client) from None
    try:
        client.create_bucket(Bucket=bucket)
    except Exception as exc:
        raise explain(exc, f"creating bucket {bucket}", client) from None
    return True
