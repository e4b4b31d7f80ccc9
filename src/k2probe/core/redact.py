"""Keep secrets in memory: replace any known key, Bearer token or token-bearing URL parameter before anything is written
or printed. A key given to any Redactor is known to all of them (and to the guarded stdout/stderr) from then on."""

from __future__ import annotations

import io
import re
from typing import Any, TextIO

from k2probe.core.untrusted import storable

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")
_URL_TOKEN = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|auth)=)[^&\s\"']+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_-]{12,}")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_KNOWN: set[str] = set()
_ordered: list[str] = []


def remember(secret: str | None) -> None:
    """Redact `secret` everywhere from now on, with the forms it takes once quoted (stripped, repr-escaped)."""
    if not secret:
        return
    forms = {secret, secret.strip(), repr(secret)[1:-1], secret.encode("unicode_escape").decode("ascii", "replace")}
    fresh = {f for f in forms if len(f) >= 4} - _KNOWN
    if fresh:
        _KNOWN.update(fresh)
        _ordered[:] = sorted(_KNOWN, key=len, reverse=True)


def known_secrets() -> list[str]:
    """Every secret redacted so far (for a process of k2probe's own that must redact as this one does)."""
    return list(_ordered)


def redact(value: str) -> str:
    """`value` with every known secret, Bearer token, URL token or password and sk- key replaced by ***; valid UTF-8
    (a lone surrogate escaped), since what is redacted is bound for disk or output."""
    value = _replace_known(storable(value))
    value = _BEARER.sub(r"\1***", value)
    value = _URL_TOKEN.sub(r"\1***", value)
    value = _URL_PASSWORD.sub(r"\1***@", value)
    return _SK.sub("sk-***", value)


class Redactor:
    """Redacts the given secrets (and every other known one, and anything shaped like a key) out of text and JSON."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        for secret in secrets or []:
            remember(secret)

    def text(self, value: str) -> str:
        return redact(value)

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string redacted (dict keys included). Its strings are first searched once,
        joined: a value with nothing to redact (almost every one) comes back as it is, without a walk per string."""
        if not _needs_redaction(value):
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {redact(str(k)): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value


def _strings(value: Any, into: list[str]) -> bool:
    """Collect the strings of a JSON-like value (dict keys included); False when a part is not plain JSON (a key
    that is no string, a tuple, an object) — whose redacted form differs from the value itself."""
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return False
            into.append(key)
            if not _strings(item, into):
                return False
    elif isinstance(value, list):
        return all(_strings(item, into) for item in value)
    elif not (value is None or isinstance(value, bool | int | float)):
        return False
    return True


def _needs_redaction(value: Any) -> bool:
    """Whether any string of `value` holds something `redact` would change. The strings are joined by NUL, which no
    pattern's match can need (nor a secret hold): a match in one string is a match in the join, so no match in the
    join means nothing to change."""
    found: list[str] = []
    if not _strings(value, found):
        return True
    joined = "\0".join(found)
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: `redact` escapes it
            return True
    return (any(secret in joined for secret in _ordered) or _BEARER.search(joined) is not None
            or _URL_TOKEN.search(joined) is not None or _URL_PASSWORD.search(joined) is not None
            or _SK.search(joined) is not None)


_OPEN_BEARER = re.compile(r"(?i)bearer\s*$")  # "Bearer " at a cut: the token may come in the next piece
_SPACE = " \t\n\r\x0b\x0c"
STREAM_MAX_HOLD = 4096  # a run without whitespace longer than this is let through (past any key it could hide)


def _replace_known(value: str) -> str:
    for secret in _ordered:
        if secret in value:
            value = value.replace(secret, "***")
    return value


class StreamRedactor:
    """Redaction over a stream as a whole: `feed` each piece as it arrives and show what it returns; `finish` at the
    end. A secret split across pieces is still caught: known secrets are replaced in the text held so far, and the
    last len(longest secret)-1 characters, any unfinished word (a key-shaped token may still be growing) and a
    trailing "Bearer " are held back until the next piece or the end."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        held = _replace_known(self._held + piece)
        cut = self._cut(held)
        self._held = held[cut:]
        return redact(held[:cut])

    def finish(self) -> str:
        """The rest, redacted; the redactor is empty afterwards."""
        held, self._held = self._held, ""
        return redact(held)

    @staticmethod
    def _cut(held: str) -> int:
        """Where the settled part of `held` ends: at ASCII whitespace (no key-shaped token spans it), not after a
        "Bearer", and before the last len(longest secret)-1 characters. Each step is a bounded search from the end,
        so a piece costs time in its own length and the hold, never in the whole stream."""
        longest = len(_ordered[0]) if _ordered else 0
        cut = max(0, len(held) - max(longest - 1, 0))
        while cut > 0:
            if held[cut - 1] not in _SPACE and (cut == len(held) or held[cut] not in _SPACE):  # inside a word
                low = max(0, cut - STREAM_MAX_HOLD)
                space = max(held.rfind(c, low, cut) for c in _SPACE)
                if space < 0 and low > 0:  # a run longer than the hold: let it through, but not a key inside it
                    return _outside_tokens(held, low)
                cut = space + 1
                continue
            bearer = _OPEN_BEARER.search(held, max(0, cut - 64), cut)
            if bearer is None:
                break
            cut = bearer.start()
        return cut


def _outside_tokens(held: str, cut: int) -> int:
    """`cut`, moved back to the start of any key-shaped token (up to 512 characters long) that spans it."""
    low = max(0, cut - 512)
    for pattern in (_SK, _BEARER, _URL_TOKEN):
        for match in pattern.finditer(held, low, min(len(held), cut + 512)):
            if match.start() < cut < match.end():
                cut = match.start()
    return cut


class RedactingStream(io.TextIOBase):
    """stdout or stderr with every write redacted: nothing k2probe (or a library under it) prints can show a key."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError("write() argument must be str")
        self.inner.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "errors", None)
