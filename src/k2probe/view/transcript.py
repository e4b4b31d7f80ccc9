"""A sample's conversation as the sample page shows it: the messages of its last request (each stored once, shared by
every request with that prefix), then the answer it got; tool calls with their arguments pretty-printed, long texts cut
with their full length said. Plain data for the template, which escapes every value."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from k2probe.core.results import Sample


@dataclass
class Shown:
    """A text as shown: at most `limit` characters, and how long it really is."""

    text: str
    length: int
    cut: bool = False


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # pretty JSON when it parses, else as sent


@dataclass
class Message:
    role: str
    content: Shown
    reasoning: Shown | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    answer: bool = False  # the sample's answer (its length then counted in bytes, read without reading it all)


def _shown(value: Any, limit: int) -> Shown:
    if isinstance(value, list):  # content parts: text kept, media named
        value = "\n".join(str(p.get("text")) if isinstance(p, dict) and p.get("type") == "text"
                          else f"[{p.get('type', 'part')}]" if isinstance(p, dict) else str(p) for p in value)
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return Shown(text[:limit], len(text), len(text) > limit)


def _pretty(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
        except ValueError:
            return arguments
    return json.dumps(arguments, indent=2, default=str)


def _message(raw: Any, limit: int) -> Message:
    if not isinstance(raw, dict):
        return Message(role="?", content=_shown(raw, limit))
    calls = []
    for call in raw.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append(ToolCall(id=str(call.get("id", "")), name=str(function.get("name", "")),
                                  arguments=_pretty(function.get("arguments"))[:limit]))
    reasoning = raw.get("reasoning_content")
    return Message(role=str(raw.get("role", "?")), content=_shown(raw.get("content"), limit),
                   reasoning=None if reasoning is None else _shown(reasoning, limit), tool_calls=calls,
                   tool_call_id=raw.get("tool_call_id"))


def transcript(calls: list[dict[str, Any]], sample: Sample, limit: int, answer_length: int | None = None) -> list[Message]:
    """The last request's messages, then the sample's answer as the assistant's last turn (`answer_length`: the
    answer's size in bytes, when only its beginning was read)."""
    messages: list[Any] = []
    for call in reversed(calls):
        request = call.get("request")
        if isinstance(request, dict) and isinstance(request.get("messages"), list):
            messages = request["messages"]
            break
    shown = [_message(m, limit) for m in messages]
    if sample.completion is not None:
        answer = _shown(sample.completion, limit)
        if answer_length is not None:
            answer.length = answer_length
            answer.cut = answer_length > len(answer.text.encode("utf-8"))
        shown.append(Message(role="assistant (answer)", content=answer, answer=True))
    return shown


@dataclass(frozen=True)
class CallRow:
    """One call of a sample, as its timings table shows it."""

    number: int
    purpose: str
    stream: bool
    status: int | None
    error: str | None
    ttft_ms: float | None
    latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_usd: float | None


def call_rows(calls: list[dict[str, Any]], first: int = 1) -> list[CallRow]:
    """Calls as a timings table shows them, numbered from `first`."""
    return [CallRow(number=i + first, purpose=str(c.get("purpose") or c.get("endpoint") or ""), stream=bool(c.get("stream")),
                    status=c.get("status"), error=c.get("error_type"), ttft_ms=c.get("ttft_ms"),
                    latency_ms=c.get("latency_ms"), prompt_tokens=int(c.get("prompt_tokens") or 0),
                    completion_tokens=int(c.get("completion_tokens") or 0),
                    reasoning_tokens=int(c.get("reasoning_tokens") or 0), cost_usd=c.get("cost_usd"))
            for i, c in enumerate(calls)]
