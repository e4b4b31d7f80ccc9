"""Keep secrets in memory: replace any known key, Bearer token or token-bearing URL parameter before anything is written."""

from __future__ import annotations

import re
from typing import Any

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")
_URL_TOKEN = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|auth)=)[^&\s\"']+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_-]{12,}")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


class Redactor:
    """Redacts the given secrets (and anything shaped like a key) out of text and JSON-like values."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets = sorted({s for s in (secrets or []) if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, "***")
        value = _BEARER.sub(r"\1***", value)
        value = _URL_TOKEN.sub(r"\1***", value)
        value = _URL_PASSWORD.sub(r"\1***@", value)
        return _SK.sub("sk-***", value)

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string redacted (dict keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
