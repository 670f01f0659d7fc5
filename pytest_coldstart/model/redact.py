"""Keep secrets out of logs, results and reports.

Three rules, applied together by :class:`Redactor`:

* **by name**: values of secret-looking environment variables are replaced
  wherever they appear, and such variables are never recorded by value;
* **by value, wherever they came from**: credentials that never pass through
  the environment are learned too: what boto3's credential chain resolves
  (a ``~/.aws/credentials`` profile, SSO, an instance role) and the Hugging
  Face token (``HF_TOKEN``, or its token file: ``$HF_TOKEN_PATH``,
  ``$HF_HOME/token``, ``~/.cache/huggingface/token``, ``stored_tokens``);
* **from the server's side**: the values the server itself is given, in its
  own environment (``servers.toml`` / ``models.toml`` / ``optimizations.toml``
  ``env``) by name, and in its argv after a secret-named flag (``--api-key X``,
  ``--hf-token=X``, ``--password X``): :meth:`Redactor.for_server`;
* **by pattern**, for secrets we cannot know in advance: ``hf_...`` tokens,
  ``AKIA``/``ASIA`` access key ids, ``Authorization: Bearer ...``, the
  signature/credential/token parameters of presigned S3 URLs, and the password
  of any URL's userinfo (``https://user:pass@host``, ``redis://:pass@host``).
"""

from __future__ import annotations

import configparser
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

SECRET_NAME_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|ACCESS_KEY|API_KEY|APIKEY"
                            r"|SESSION_KEY|PRIVATE_KEY|AUTH_KEY|(?:^|_)PASS$|_PWD$)", re.I)
MASK = "***"

#: (pattern, replacement): secrets recognisable by their shape.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"(?i)\b(Bearer\s+|Authorization:\s*Basic\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{MASK}"),
    (re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+"), rf"\1{MASK}"),
    (re.compile(r"(?i)(aws_secret_access_key|aws_session_token)(\s*[=:]\s*)\S+"), rf"\1\2{MASK}"),
    # A URL's userinfo password, any scheme: `https://user:pass@host`, `redis://:pass@host:6379/0`.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@\"'<>]*:)[^\s/@\"'<>]+@"), rf"\1{MASK}@"),
)
#: A cheap test each pattern needs to pass before its regex runs: the regexes scan every position of a
#: line (100-300 us on 8 KiB); a one-character ``in`` is a memchr (<1 us) and a short substring a fast
#: search (~10 us), so a log flood is read at the speed of the cheap tests (benchmarks/log_flood.py).
#: Each takes (text, lower-cased text).
_PATTERN_GUARDS: tuple[Callable[[str, str], bool], ...] = (
    lambda t, low: "_" in t and "hf_" in t,
    lambda t, low: "A" in t and ("AKIA" in t or "ASIA" in t),
    lambda t, low: "bearer" in low or "authorization" in low,
    lambda t, low: "-" in t and "x-amz-" in low,
    lambda t, low: "_" in t and "aws_s" in low,
    lambda t, low: "@" in t and "://" in t,
)
#: A flag whose value is a secret: ``--api-key``, ``--hf-token``, ``--password``, ``--db-passwd``; the word
#: must end the flag, so vLLM's ``--tokenizer`` and ``--max-num-batched-tokens`` are not taken for one.
_SECRET_FLAG_RE = re.compile(r"^--?(?:[A-Za-z0-9_.-]*[-_.])?(?:api[-_]?key|token|secret|password|passwd|passphrase"
                             r"|pass|credentials?|access[-_]?key|secret[-_]?key|private[-_]?key|auth)$", re.I)


def is_secret_name(name: str) -> bool:
    """True for an env var or flag name that holds a secret (``HF_TOKEN``, ``api-key``, ``DB_PASS``)."""
    return bool(SECRET_NAME_RE.search(name.replace("-", "_").replace(".", "_")))


def argv_secrets(argv: Iterable[str]) -> set[str]:
    """Values of secret-named flags in *argv*: ``--api-key X``, ``--api-key=X``, ``--token X``.

    vLLM takes ``--api-key`` and (with a hub model) ``--hf-token`` on its command line
    (vllm/entrypoints/openai/cli_args.py, 0.6+); a custom server can take anything.
    """
    found: set[str] = set()
    args = list(argv)
    for i, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if not _SECRET_FLAG_RE.match(flag):
            continue
        if eq:
            found.add(inline)
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            found.add(args[i + 1])
    return {v for v in found if v}


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

    @classmethod
    def for_server(cls, env: Mapping[str, str], argv: Iterable[str] = ()) -> Redactor:
        """Secrets of the harness (``from_env``) and of the server itself: its env by name, its argv's
        secret-named flags (``argv_secrets``)."""
        return cls([*cls.from_env(env).secrets, *argv_secrets(argv)])

    @property
    def secrets(self) -> tuple[str, ...]:
        """The known values, longest first."""
        return tuple(self._secrets)

    def with_secrets(self, more: Iterable[str]) -> Redactor:
        """This redactor plus *more* values."""
        return Redactor([*self._secrets, *more])

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        lower = text.lower()
        for (pattern, replacement), guard in zip(SECRET_PATTERNS, _PATTERN_GUARDS, strict=True):
            if guard(text, lower):
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


def redact_env(env: Mapping[str, str], redactor: Redactor | None = None) -> dict[str, str]:
    """A copy of *env* that is safe to record (secret-named values masked, known values and URL passwords too)."""
    redactor = (redactor or Redactor(())).with_secrets(Redactor.from_env(env).secrets)
    return {k: (MASK if is_secret_name(k) else redactor.redact(v)) for k, v in sorted(env.items())}
