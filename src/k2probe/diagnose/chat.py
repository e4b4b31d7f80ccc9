"""One request from the command line: the prompt sanitised for the route's model, sent, and its figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k2probe.client.media import Media
from k2probe.client.stream import Listener
from k2probe.client.transport import Outcome
from k2probe.client.uploads import deliver
from k2probe.contexts import RouteContext, RunContext
from k2probe.core.errors import UsageError
from k2probe.core.sanitize import Change, sanitise


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


async def run_chat(routed: RouteContext, run: RunContext, request: dict[str, Any], *, strict: bool = False,
                   listener: Listener | None = None, on_changes: Callable[[list[Change]], None] | None = None,
                   media: list[Media] | None = None, force_upload: bool = False,
                   on_notes: Callable[[list[str]], None] | None = None, purpose: str = "chat") -> ChatResult:
    """Deliver media (uploading where needed), sanitise (telling `on_changes` what changed before anything is
    sent), check the body size, send to the route `routed`, and return the outcome (its calls recorded in `run`)."""
    async with routed.transport(run.record) as transport:
        notes: list[str] = []
        if media:
            notes = await deliver(transport, media, force_upload=force_upload)
            request = with_media(request, media)
            if on_notes is not None:
                on_notes(notes)
        sanitised = sanitise(request, routed.profile, strict=strict)
        if on_changes is not None:
            on_changes(sanitised.changes)
        check_body_size(sanitised.body, routed.profile.media.body_max_bytes)
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
