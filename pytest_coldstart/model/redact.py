"""Keep secrets out of logs, results and reports.

Three rules, applied together by :class:`Redactor`:

* **by name**: values of secret-looking environment variables are replaced
  wherever they appear, and such variables are never recorded by value;
* **by value, wherever they came from**: credentials that never pass through
  the environment are learned too: what boto3's credential chain resolves
  (a ``~/.aws/credentials`` profile, SSO, an instance role) and the Hugging
  Face token (``HF_TOKEN``, or its token file: ``$HF_TOKEN_PATH``,
  ``$HF_HOME/token``, ``~/.cache/huggingface/token``, ``stored_tokens``);
* **by pattern**, for secrets we cannot know in advance: ``hf_...`` tokens,
  ``AKIA``/``ASIA`` access key ids, ``Authorization: Bearer ...`` and the
  signature/credential/token parameters of presigned S3 URLs.
"""

from __future__ import annotations

import configparser
import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

SECRET_NAME_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|API_KEY|SESSION_KEY)", re.I)
MASK = "***"

#: (pattern, replacement): secrets recognisable by their shape.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"(?i)\b(Bearer\s+|Authorization:\s*Basic\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{MASK}"),
    (re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+"), rf"\1{MASK}"),
    (re.compile(r"(?i)(aws_secret_access_key|aws_session_token)(\s*[=:]\s*)\S+"), rf"\1\2{MASK}"),
)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME_RE.search(name))


def _hf_token_files(env: Mapping[str, str]) -> list[Path]:
    home = Path(env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    files = [home / "token", home / "stored_tokens"]
    if env.get("HF_TOKEN_PATH"):
        files.insert(0, Path(env["HF_TOKEN_PATH"]))
    return files


def hf_tokens(env: Mapping[str, str]) -> set[str]:
    """The Hugging Face token(s) this process could use: from the env or the token files."""
    found = {env[k] for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if env.get(k)}
    for path in _hf_token_files(env):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if path.name == "stored_tokens":  # an INI file: [name] hf_token = ...
            parser = configparser.ConfigParser()
            try:
                parser.read_string(text)
            except configparser.Error:
                continue
            found.update(s.get("hf_token", "").strip() for s in parser.values() if s.get("hf_token"))
        else:
            found.add(text.strip())
    return {t for t in found if t}


def aws_secrets(env: Mapping[str, str]) -> set[str]:
    """The key id, secret and session token boto3's chain resolves (profile files, SSO, instance role)."""
    files = [Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials"),
             Path(env.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")]
    found: set[str] = set()
    for path in files:  # every profile, not only the active one: a later --profile must not leak either
        parser = configparser.ConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        for section in parser.values():
            found.update(v.strip() for k, v in section.items()
                         if k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token") and v.strip())
    try:
        import boto3
        import botocore.exceptions

        creds = boto3.Session().get_credentials()
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            found.update(v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v)
    except ImportError:
        pass
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError, ValueError):
        pass  # no usable chain: nothing to learn from it
    return found


@functools.lru_cache(maxsize=8)
def _learned(key: tuple[tuple[str, str], ...]) -> frozenset[str]:
    env = dict(key)
    return frozenset(hf_tokens(env) | aws_secrets(env))


def learned_secrets(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """Secret values known to this process that may never pass through an env var (cached per env)."""
    env = os.environ if env is None else env
    relevant = tuple(sorted((k, v) for k, v in env.items() if k.startswith(("AWS_", "HF_", "HUGGING", "XDG_CACHE",
                                                                             "HOME"))))
    return _learned(relevant)


class Redactor:
    """Replaces known secret values (longest first) and secret-shaped text with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Very short values would mask ordinary text; real keys are long.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Redactor:
        """Secrets of *env* by name, plus those learned from boto3 and the HF token files."""
        return cls([*(value for name, value in env.items() if is_secret_name(name)), *learned_secrets(env),
                    *(learned_secrets() if env is not os.environ else ())])

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, replacement in SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: object) -> object:
        """*value* with every string in it (nested dicts, lists, tuples; keys too) redacted."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(k) if isinstance(k, str) else k: self.redact_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact_value(v) for v in value)
        return value


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of *env* that is safe to record."""
    redactor = Redactor.from_env(env)
    return {k: (MASK if is_secret_name(k) else redactor.redact(v)) for k, v in sorted(env.items())}
