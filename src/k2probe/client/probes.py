"""Raw HTTP probes (httpx) for what the SDK hides: does anything answer at a base URL, and is it an API?"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from k2probe.client.answers import Malformed, NotJson, load
from k2probe.core.failures import Failure, from_body, plain_http_failure, spoke_plain_http
from k2probe.core.records import CallRecord


@dataclass
class ProbeResult:
    url: str
    status: int | None
    data: dict[str, Any] | None
    failure: Failure | None
    record: CallRecord

    @property
    def api_like(self) -> bool:
        """The URL answered like an OpenAI-compatible API: a JSON model list, or an auth error in JSON."""
        if self.status == 200 and self.data is not None:
            return True
        if self.failure is None or self.failure.type == "non_json_response":
            return False
        # an auth error in JSON — by status, or by its words (a LiteLLM proxy answers a wrong key with a 400)
        return self.status in (401, 403) or self.failure.cause == "invalid_key"


async def probe_models(base_url: str, key: str, route: str, model: str, timeout_s: float = 10.0) -> ProbeResult:
    """GET {base_url}/models with the key; never raises for network or protocol trouble."""
    url = base_url.rstrip("/") + "/models"
    record = CallRecord(route=route, model=model, endpoint="GET /models", stream=False,
                        request={"url": url}, started_at=time.time(), purpose="doctor: base URL")
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(url, headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        down = plain_http_failure() if spoke_plain_http(exc) else \
            Failure(None, "connection_error", f"nothing answered at {_host(url)}: {type(exc).__name__}")
        record.latency_ms = (time.perf_counter() - started) * 1000.0
        record.error_type, record.error_message = down.type, down.message
        return ProbeResult(url, None, None, down, record)
    record.latency_ms = (time.perf_counter() - started) * 1000.0
    record.status = response.status_code
    parsed = _checked(response.status_code, response.text, response.headers.get("content-type", ""))
    failure: Failure | None = parsed if isinstance(parsed, Failure) else None
    if failure is None and response.status_code >= 400:
        failure = Failure(response.status_code, "http_error", response.text[:200])
    data = parsed if isinstance(parsed, dict) and failure is None else None
    if failure is not None:
        record.error_type, record.error_message = failure.type, failure.message
    return ProbeResult(url, response.status_code, data, failure, record)


def _checked(status: int, text: str, content_type: str) -> Failure | dict[str, Any]:
    """A model list (or an error envelope) read as untrusted JSON: nesting, Unicode and `data` checked first."""
    try:
        load(text)
    except NotJson:
        pass  # from_body names it non_json_response
    except Malformed as exc:
        return Failure(status, "malformed_response", f"the model list cannot be used: {exc}")
    parsed = from_body(status, text, content_type)
    if isinstance(parsed, dict) and not isinstance(parsed.get("data", []), list):
        return Failure(status, "malformed_response", "the model list cannot be used: `data` is not a list")
    return parsed


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def url_variants(base_url: str) -> list[str]:
    """Plausible corrections of a base URL, most likely first: one /v1 too many, none, an endpoint pasted in."""
    parts = urlsplit(base_url.strip().strip("'\""))
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    candidates = []
    while "/v1/v1" in path:
        path = path.replace("/v1/v1", "/v1")
    candidates.append(path)
    if not path.endswith("/v1"):
        candidates.append(path + "/v1")
    out = []
    for candidate in candidates:
        url = urlunsplit((parts.scheme, parts.netloc, candidate, "", ""))
        if url != base_url and url not in out:
            out.append(url)
    return out
