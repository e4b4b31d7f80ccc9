"""What k2probe records about each HTTP request: the call record, token usage and its cost."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

from k2probe.core.profiles import Price

MAX_TOKENS = 100_000_000  # more tokens than any one request can carry: a count past it is not a count


def token_count(value: object) -> int:
    """A usage figure as a server sent it, as a count: a whole number (12.0 too) from 0 to MAX_TOKENS, absent as 0;
    anything else is ValueError (the answer is malformed, never a negative or huge count)."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_TOKENS:
        raise ValueError(f"not a token count: {str(value)[:40]}")
    return value


@dataclass
class Usage:
    """Token counts under the API's own names; completion_tokens already includes reasoning_tokens."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    gateway_cost: float | None = None  # a gateway's own usage.cost (OpenRouter)
    # read from an answer only once validated (client/answers.py): finite, non-negative, within a sane bound


_LINKS: ContextVar[dict[str, Any] | None] = ContextVar("k2probe_call_links", default=None)


@contextmanager
def linked(**keys: Any) -> Iterator[None]:
    """Calls made inside this block carry these keys (sample_id, attempt_id, step): each asyncio task sees its own."""
    token = _LINKS.set({**links(), **keys})
    try:
        yield
    finally:
        _LINKS.reset(token)


def links() -> dict[str, Any]:
    """The keys calls made here are linked by."""
    return _LINKS.get() or {}


def cost_of(usage: Usage, price: Price | None) -> float | None:
    """USD for these tokens at this price; None ("cost unknown") without a price, never a silent $0 — nor a negative
    or infinite figure, whatever the counts."""
    if price is None:
        return None
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    if any(not isinstance(n, int) or n < 0 for n in counts):
        return None
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    try:
        cost = (cached * price.cache_hit_input + (usage.prompt_tokens - cached) * price.cache_miss_input
                + usage.completion_tokens * price.output) / 1e6
    except OverflowError:
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


@dataclass
class CallRecord:
    """One HTTP request and what came of it. Holds no key, no Authorization header, no token-bearing URL."""

    route: str
    model: str
    endpoint: str
    stream: bool
    request: dict[str, Any]
    attempt: int = 0  # 0 for the first try, k for the k-th retry
    purpose: str | None = None  # why it was sent: "doctor: model", "smoke", "agent step 3"…
    sample_id: str | None = None  # what caused it, by key (see `linked`)
    attempt_id: str | None = None
    step: int | None = None
    fallback_from: str | None = None  # the route that could not answer, when this call went to its fallback
    status: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    retry_reason: str | None = None  # why this attempt was followed by another
    queue_ms: float = 0.0  # waiting for a concurrency slot inside k2probe
    prep_ms: float = 0.0  # the SDK building the request, until it is handed to the HTTP client
    pool_ms: float = 0.0  # waiting for a connection from the HTTP client's pool
    connect_ms: float = 0.0  # opening a new connection (TCP, and TLS where used); 0 on a reused one
    # TTFT, TTFC and latency count from the moment the request headers start onto the wire (httpcore's trace)
    ttft_ms: float | None = None
    ttfc_ms: float | None = None
    latency_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    price_source: str | None = None
    finish_reason: str | None = None
    usage_location: str | None = None
    reasoning_field: str | None = None
    response_shape: list[str] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0  # wall-clock epoch seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(call: CallRecord) -> dict[str, Any]:
    """The numbers of one call under the API's names and `_ms` timings (the --json vocabulary)."""
    output_tokens = call.completion_tokens
    tps = None
    if call.ttft_ms is not None and call.latency_ms and output_tokens > 1 and call.latency_ms > call.ttft_ms:
        tps = (output_tokens - 1) / ((call.latency_ms - call.ttft_ms) / 1000.0)
    return {
        "status": call.status, "ttft_ms": call.ttft_ms, "ttfc_ms": call.ttfc_ms, "latency_ms": call.latency_ms,
        "queue_ms": call.queue_ms, "prep_ms": call.prep_ms, "pool_ms": call.pool_ms, "connect_ms": call.connect_ms,
        "tokens_per_s": tps, "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens, "reasoning_tokens": call.reasoning_tokens,
        "cached_tokens": call.cached_tokens, "cost_usd": call.cost_usd, "price_source": call.price_source,
        "finish_reason": call.finish_reason, "usage_location": call.usage_location,
        "reasoning_field": call.reasoning_field,
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def figures_line(call: CallRecord) -> str:
    """One call's figures in a line of text (TTFT, latency, tokens, cost), for a step's detail or the terminal."""
    f = figures(call)
    cost = "cost unknown" if f["cost_usd"] is None else f"${f['cost_usd']:.6f}"
    tps = "–" if f["tokens_per_s"] is None else f"{f['tokens_per_s']:.0f} tok/s"
    parts = []
    if call.stream:
        parts += [f"TTFT {_ms(f['ttft_ms'])}", f"first content {_ms(f['ttfc_ms'])}", tps]
    parts += [f"latency {_ms(f['latency_ms'])}",
              f"tokens {f['prompt_tokens']} in / {f['completion_tokens']} out ({f['reasoning_tokens']} reasoning, "
              f"{f['cached_tokens']} cached)", cost]
    return " · ".join(parts)
