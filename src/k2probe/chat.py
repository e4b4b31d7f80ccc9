"""One request from the command line: the prompt sanitised for the route's model, sent, and its figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .records import CallRecord
from .sanitize import Change, sanitise
from .session import Session
from .stream import Listener
from .transport import Outcome


@dataclass
class ChatResult:
    outcome: Outcome
    changes: list[Change]
    body: dict[str, Any]


def chat_request(model: str, prompt: str, *, system: str | None = None, stream: bool = False,
                 max_tokens: int | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body a caller asks for, before the sanitiser sees it."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": model, "messages": messages, **(params or {})}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    return body


async def run_chat(session: Session, request: dict[str, Any], *, strict: bool = False,
                   listener: Listener | None = None, on_changes: Callable[[list[Change]], None] | None = None
                   ) -> ChatResult:
    """Sanitise (telling `on_changes` what changed before anything is sent), send, and return the outcome."""
    sanitised = sanitise(request, session.profile, strict=strict)
    if on_changes is not None:
        on_changes(sanitised.changes)
    transport = session.transport()
    try:
        outcome = await transport.chat(sanitised.body, listener=listener)
    finally:
        await transport.aclose()
    return ChatResult(outcome, sanitised.changes, sanitised.body)


def figures(call: CallRecord) -> dict[str, Any]:
    """The numbers of one call under the API's names and `_ms` timings (the --json vocabulary)."""
    output_tokens = call.completion_tokens
    tps = None
    if call.ttft_ms is not None and call.latency_ms and output_tokens > 1 and call.latency_ms > call.ttft_ms:
        tps = (output_tokens - 1) / ((call.latency_ms - call.ttft_ms) / 1000.0)
    return {
        "status": call.status, "ttft_ms": call.ttft_ms, "ttfc_ms": call.ttfc_ms, "latency_ms": call.latency_ms,
        "queue_ms": call.queue_ms, "prep_ms": call.prep_ms, "tokens_per_s": tps, "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens, "reasoning_tokens": call.reasoning_tokens,
        "cached_tokens": call.cached_tokens, "cost_usd": call.cost_usd, "price_source": call.price_source,
        "finish_reason": call.finish_reason, "usage_location": call.usage_location,
        "reasoning_field": call.reasoning_field,
    }
