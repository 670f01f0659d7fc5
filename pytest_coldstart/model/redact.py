"""Keep secrets out of logs, results and reports.

Two rules: values of secret-looking environment variables are replaced
wherever they appear, and such variables are never recorded by value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET_NAME_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|API_KEY|SESSION_KEY)", re.I)
MASK = "***"


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME_RE.search(name))


class Redactor:
    """Replaces known secret values (longest first) with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Very short values would mask ordinary text; real keys are long.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Redactor:
        return cls(value for name, value in env.items() if is_secret_name(name))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of *env* that is safe to record."""
    return {k: (MASK if is_secret_name(k) else v) for k, v in sorted(env.items())}
