"""Turn whatever went wrong on the wire into a Failure: status, the provider's error type and message, retryability."""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from k2probe.core.untrusted import storable

RETRYABLE_STATUS = {408, 409, 500, 502, 503, 504}
NOT_RETRYABLE_TYPES = {"exceeded_current_quota_error", "insufficient_quota"}
MESSAGE_CHARS = 500  # a server's words kept in a failure: enough to read the cause, never a whole hostile body


def words(text: str, limit: int = MESSAGE_CHARS) -> str:
    """A server's words made safe to keep: valid UTF-8 (a lone surrogate becomes its `\\udXXX` escape, which any
    store and terminal can take) and at most `limit` characters."""
    return storable(text if len(text) <= limit else text[: limit - 1] + "…")


@dataclass
class Failure:
    """Why a request did not give a usable answer."""

    status: int | None
    type: str
    message: str
    retry_after_s: float | None = None
    mid_stream: bool = False

    def __post_init__(self) -> None:  # whatever a server said, what is kept of it can be stored and printed
        self.type, self.message = words(str(self.type), 80), words(str(self.message))

    @property
    def cause(self) -> str:
        """What the failure points to, read from the body as well as the status (see `cause_of`)."""
        return cause_of(self)

    @property
    def retryable(self) -> bool:
        if self.mid_stream or self.type in NOT_RETRYABLE_TYPES or self.cause == "quota_exhausted":
            return False
        if self.status is None:
            return self.type in ("connection_error", "timeout")
        return self.status == 429 or self.status in RETRYABLE_STATUS

    def line(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        return f"{status} {self.type}: {self.message}"


def _words(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns), re.I)


# Phrasings of the same causes by Moonshot, OpenAI, OpenRouter (upstream errors unwrapped from metadata.raw), WisGate and
# LiteLLM (upstream errors wrapped as "litellm.XError: <Provider>Exception - <message>"); each matched by a test.
_QUOTA = _words(r"insufficient[ _](balance|credits|quota)", r"exceeded[ _](your )?current[ _]quota", r"quota exceeded",
                r"credit balance is too low", r"suspended due to", r"out of credits")
_BAD_KEY = _words(r"invalid (proxy server )?token", r"token_not_found_in_db", r"no connected db", r"invalid[ _]api[ _]key",
                  r"incorrect[ _]api[ _]key", r"invalid[ _]authentication", r"authentication[ _]error",
                  r"user not found", r"api key (is )?(disabled|expired|revoked)", r"unauthorized")
_UNKNOWN_MODEL = _words(r"invalid model name passed", r"not found the model", r"model_not_found", r"invalid_model",
                        r"model\W.{0,80}(does not exist|not found|is not (a )?valid)", r"no endpoints found for",
                        r"is not a valid model id", r"unknown model")
_GATEWAY_PARAM = _words(r"unsupportedparamserror", r"does not support parameters", r"drop_params",
                        r"allowed_openai_params")
_PARAM = _words(r"invalid (temperature|top_p|presence_penalty|frequency_penalty|n|thinking)\b", r"unsupported parameter",
                r"not supported", r"unrecognized request argument", r"extra inputs are not permitted",
                r"invalid value for", r"no endpoints found that support", r"unknown parameter")


def cause_of(failure: Failure) -> str:
    """The diagnosis a failure points to, from its status *and* its body. A 400 whose cause cannot be told is
    `unclassified` (its words are kept), never blamed on a parameter by default."""
    text = f"{failure.type} {failure.message}"
    status = failure.status
    if status is None:
        return "bad_base_url" if failure.type == PLAIN_HTTP else "unreachable"
    if failure.type == "stream_cut":  # the connection broke mid-answer: the same kind whoever sees it (doctor, bench)
        return "stream_cut"
    if failure.type == "malformed_response" and 200 <= status < 300:  # answered, but nothing of it can be used
        return "malformed_response"
    if failure.type in NOT_RETRYABLE_TYPES or status == 402 or _QUOTA.search(text):
        return "quota_exhausted"
    if (status in (401, 403) and "moderation" not in text.lower()) or (status < 500 and _BAD_KEY.search(text)):
        return "invalid_key"
    if status < 500 and re.search(r"no endpoints found that support", text, re.I):
        return "unsupported_param"  # the model exists; no provider behind the route takes this feature (tools, …)
    if status < 500 and _UNKNOWN_MODEL.search(text):
        return "unknown_model"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status == 404:
        return "bad_base_url"
    if failure.type == "non_json_response":
        return "bad_base_url"
    if _GATEWAY_PARAM.search(text):
        return "gateway_rejected_param"
    lowered = text.lower()
    if "tool_choice" in lowered:
        return "tool_choice_rejected"
    if "reasoning_content" in lowered:
        return "reasoning_dropped"
    if _PARAM.search(text):
        return "unsupported_param"
    return "unclassified"


def _envelope(body: Any) -> tuple[str | None, str | None]:
    """(type, message) from Moonshot's envelope, OpenAI's, or OpenRouter's with the upstream error in metadata.raw."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error", body)
    if not isinstance(error, dict):
        return None, str(error)
    metadata = error.get("metadata") or {}
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    if isinstance(raw, str):
        try:
            inner_type, inner_message = _envelope(json.loads(raw))
        except (ValueError, RecursionError):  # not JSON, or JSON nested past what the parser takes
            inner_type, inner_message = None, None
        if inner_type:
            return inner_type, inner_message
    kind = error.get("type")
    if kind in (None, "", "None", "null"):  # LiteLLM sends the string "None"
        kind = str(error["code"]) if error.get("code") not in (None, "", "None") else None
    message = error.get("message")
    return (str(kind) if kind else None), (str(message) if message is not None else None)


def _seconds(value: str) -> float | None:
    """Seconds from a Retry-After value: a number, or an HTTP date; None for anything else (garbage, nan, inf)."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        seconds = parsed.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _retry_after(headers: Any) -> float | None:
    """The server's Retry-After (or retry-after-ms) in seconds, finite and ≥ 0; None when absent or unreadable (the
    policy then backs off on its own)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        seconds = _seconds(str(ms))
        if seconds is not None:
            return seconds / 1000.0
    value = headers.get("retry-after")
    return _seconds(str(value).strip()) if value else None


def _non_json(status: int, text: str, content_type: str) -> Failure:
    snippet = " ".join(text.split())[:80]
    kind = content_type.split(";")[0] or "unknown type"
    return Failure(status, "non_json_response",
                   f"the server answered HTTP {status} with a non-JSON body ({kind}): {snippet!r}")


PLAIN_HTTP = "tls_to_plain_http"
_PLAIN_HTTP_WORDS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "RECORD_LAYER_FAILURE",
                     "HTTP_REQUEST", "http request")


def spoke_plain_http(exc: BaseException) -> bool:
    """The TLS handshake was answered in plain HTTP (an https:// base URL for an http:// server), anywhere in the
    exception's chain."""
    import ssl

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) and any(w in str(seen) for w in _PLAIN_HTTP_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def plain_http_failure() -> Failure:
    return Failure(None, PLAIN_HTTP, "the server answered the TLS handshake in plain HTTP: the base URL says https:// "
                   "but the server speaks http://")


def from_exception(exc: BaseException, *, mid_stream: bool = False) -> Failure:
    """Classify an exception raised by the openai SDK (or by parsing its output)."""
    import openai  # here, not at the top: the load test's workers classify bodies without the SDK (0.4 s to import)

    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers
        kind, message = _envelope(exc.body)
        if kind is None and not isinstance(exc.body, dict):
            return _non_json(exc.status_code, str(exc.body or ""), headers.get("content-type", ""))
        return Failure(exc.status_code, kind or "unknown_error", message or str(exc), _retry_after(headers))
    if isinstance(exc, openai.APITimeoutError):
        return Failure(None, "timeout", "the request timed out", mid_stream=mid_stream)
    if isinstance(exc, openai.APIConnectionError):
        if spoke_plain_http(exc):
            return plain_http_failure()
        cause = exc.__cause__ or exc
        return Failure(None, "connection_error", f"cannot connect: {cause}", mid_stream=mid_stream)
    if isinstance(exc, openai.APIError):  # an error event inside a 200 stream
        kind, message = _envelope(exc.body if exc.body is not None else {})
        return Failure(200, kind or "stream_error", message or exc.message, mid_stream=True)
    if isinstance(exc, json.JSONDecodeError):
        return Failure(200, "malformed_response", f"a chunk was not valid JSON: {exc.msg}", mid_stream=mid_stream)
    return Failure(None, type(exc).__name__, str(exc), mid_stream=mid_stream)


def stream_error(event: dict[str, Any]) -> Failure:
    """An error event inside a 200 stream (`{"error": {...}}` with no choices), as the SDK would have raised it."""
    kind, message = _envelope(event)
    return Failure(200, kind or "stream_error", message or "an error event in the stream", mid_stream=True)


def from_body(status: int, text: str, content_type: str) -> Failure | dict[str, Any]:
    """A 2xx body parsed as JSON, or the Failure saying it was not JSON."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or JSON nested past what the parser takes
        return _non_json(status, text, content_type)
    if not isinstance(data, dict):
        return _non_json(status, text, content_type)
    if "error" in data and "choices" not in data:
        kind, message = _envelope(data)
        return Failure(status, kind or "unknown_error", message or text[:200])
    return data


# The fix for each diagnosis (doctor's, and every command that stops on a route's answer), said once.
FIXES = {
    "invalid_key": "check the key and that it belongs to the provider at the base URL (a .cn key fails on .ai)",
    "rate_limited": "slow down or raise your tier; k2probe's other commands retry these honouring Retry-After",
    "quota_exhausted": "top up the account balance: a quota 429 is not retryable",
    "server_error": "the provider failed: retry later, or route through a fallback",
    "unreachable": "check the host and port, VPN or proxy; is the server running?",
    "unknown_model": "set KIMI_CODING_MODEL to a model id the route lists (GET /models): a gateway alias or Moonshot's id",
    "gateway_rejected_param": ("the gateway itself refused the parameter before any model saw it (LiteLLM: add it to "
                               "allowed_openai_params for this model, or stop sending it)"),
    "malformed_response": ("the route answered 200 with something that is not a usable chat completion (what is "
                           "wrong is above): the gateway or the server behind it is broken — tell whoever runs it"),
    "unclassified": "the server's own words are above: k2probe cannot tell the cause from them",
    "stream_cut": ("the connection broke mid-stream: a proxy or load balancer with a short idle or response timeout "
                   "is the usual cause — raise it, or try the route without it"),
    "bad_base_url": "check the base URL: an OpenAI-compatible route ends in /v1 (e.g. https://api.moonshot.ai/v1)",
    "unsupported_param": "stop sending the parameter the route refuses (its words are above): run `k2probe doctor`",
}

# Causes the user's configuration must fix (key, base URL, model id, parameters, the account): a command that meets one
# before its work stops with the fix and exit 2, rather than record every sample as an error.
CONFIGURATION = frozenset({"missing_key", "invalid_key", "doubled_v1", "missing_v1", "bad_base_url", "unreachable",
                           "unknown_model", "unsupported_param", "gateway_rejected_param", "quota_exhausted"})


MOONSHOT_HOSTS = ("moonshot.ai", "moonshot.cn", "kimi.com", "kimi.ai")


def fix_for(cause: str, base_url: str | None, kind: str | None = None, key_env: str | None = None) -> str:
    """The fix for `cause` in the terms of the route at `base_url`: a bad key at Moonshot is a platform question (.cn
    or .ai), behind a gateway it is the gateway's own key."""
    from urllib.parse import urlsplit

    host = (urlsplit(base_url or "").hostname or "").lower()
    if kind == PLAIN_HTTP:
        return "write the base URL with http:// (this server speaks plain HTTP), or put TLS in front of it"
    if cause == "invalid_key" and host:
        where = f"the key in {key_env}" if key_env else "the key"
        if host.endswith(MOONSHOT_HOSTS):
            return f"check {where} and that it belongs to this platform: a .cn key fails on .ai, and the reverse"
        return (f"check {where}: it must be one {host} accepts — the gateway's own key (a LiteLLM virtual or master "
                "key, an OpenRouter key…), not the upstream provider's")
    return FIXES.get(cause, "")
