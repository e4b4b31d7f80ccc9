"""One request from the command line: the prompt sanitised for the route's model, sent, and its figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .media import Media
from .records import CallRecord
from .sanitize import Change, sanitise
from .session import Session
from .stream import Listener
from .transport import Outcome
from .uploads import deliver


@dataclass
class ChatResult:
    outcome: Outcome
    changes: list[Change]
    body: dict[str, Any]
    media_notes: list[str]


def chat_request(model: str, prompt: str, *, system: str | None = None, stream: bool = False,
                 max_tokens: int | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body a caller asks for, before the sanitiser sees it (media are added by run_chat)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": model, "messages": messages, **(params or {})}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    return body


async def run_chat(session: Session, request: dict[str, Any], *, strict: bool = False,
                   listener: Listener | None = None, on_changes: Callable[[list[Change]], None] | None = None,
                   media: list[Media] | None = None, force_upload: bool = False,
                   on_notes: Callable[[list[str]], None] | None = None, purpose: str = "chat") -> ChatResult:
    """Deliver media (uploading where needed), sanitise (telling `on_changes` what changed before anything is
    sent), check the body size, send, and return the outcome."""
    async with session.transport() as transport:
        notes: list[str] = []
        if media:
            notes = await deliver(session, transport, media, force_upload=force_upload)
            request = with_media(request, media)
            if on_notes is not None:
                on_notes(notes)
        sanitised = sanitise(request, session.profile, strict=strict)
        if on_changes is not None:
            on_changes(sanitised.changes)
        check_body_size(sanitised.body, session.profile.media.body_max_bytes)
        outcome = await transport.chat(sanitised.body, listener=listener, purpose=purpose,
                                       media=[m.record() for m in media or []])
    return ChatResult(outcome, sanitised.changes, sanitised.body, notes)


def with_media(request: dict[str, Any], media: list[Media]) -> dict[str, Any]:
    """The request with its last user message's media parts rebuilt (an upload turns data URLs into ms://)."""
    messages = [dict(m) for m in request["messages"]]
    last = messages[-1]
    content = last.get("content")
    text = content if isinstance(content, str) else next(
        (p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"), "")
    last["content"] = [{"type": "text", "text": text}, *(m.part() for m in media)]
    return {**request, "messages": messages}


def check_body_size(body: dict[str, Any], limit: int) -> None:
    size = len(json.dumps(body).encode())
    if size > limit:
        raise UsageError(f"the request body would be {size / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit",
                         fix="pass --upload to send media through the files API, or --fit to shrink them")


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
