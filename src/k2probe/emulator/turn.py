"""One chat completion being answered by the emulator: the answer cut into token pieces, the output budget applied,
usage that adds up, and the SSE stream in Moonshot's shape (with the personality's and the faults' twists)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from k2probe.core.stamps import SERVER_TTFT
from k2probe.emulator import litellm
from k2probe.emulator.answers import Answer
from k2probe.emulator.contract import ApiError

if TYPE_CHECKING:
    from k2probe.emulator.app import Emulator

PRICES = {"kimi-k2.7-code": (0.19, 0.95, 4.0), "kimi-k2.7-code-highspeed": (0.38, 1.9, 8.0)}
DEFAULT_BUDGET = 32768


class Turn:
    """One chat completion being answered: the answer cut into pieces, the budget applied, usage that adds up."""

    def __init__(self, emu: Emulator, body: dict[str, Any], model: str, answer: Answer, prompt_tokens: int,
                 arrived: float) -> None:
        self.emu = emu
        self.body = body
        asked = str(body.get("model", model))
        # a gateway alias is answered with the model it reached — except by LiteLLM, which echoes the alias
        self.model = asked if emu.personality.litellm else emu.settings.aliases.get(asked, asked)
        self.bare = model
        self.client_usage = False  # the client asked for usage in the stream (stream_options.include_usage)
        self.stamp = False  # the client asked (x-k2probe-stamp) for the server's own TTFT at the end of the stream
        self.answer = answer
        self.arrived = arrived
        self.first_token_event: int | None = None
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        budget = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_BUDGET
        self.reasoning = answer.pieces(answer.reasoning)
        self.content = answer.pieces(answer.content)
        self.args = [answer.pieces(call.arguments) or [""] for call in answer.tool_calls]
        self.finish = "tool_calls" if answer.tool_calls else "stop"
        total = len(self.reasoning) + len(self.content) + sum(len(a) for a in self.args)
        if total > int(budget):
            self.reasoning = self.reasoning[: int(budget)]
            self.content = self.content[: max(0, int(budget) - len(self.reasoning))]
            self.args, self.answer.tool_calls = [], []
            self.finish = "length"
        self.prompt_tokens = prompt_tokens
        self.cached = emu.cached_tokens(body.get("messages") or [])

    def usage(self) -> dict[str, Any]:
        reasoning = len(self.reasoning)
        completion = reasoning + len(self.content) + sum(len(a) for a in self.args)
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        if self.cached:
            usage["cached_tokens"] = self.cached
        if self.emu.personality.usage_cost and self.bare in PRICES:
            hit, miss, out = PRICES[self.bare]
            usage["cost"] = round((self.cached * hit + (self.prompt_tokens - self.cached) * miss
                                   + completion * out) / 1e6, 8)
        return usage

    def total_delay_s(self) -> float:
        s = self.emu.settings
        pieces = len(self.reasoning) + len(self.content) + sum(len(a) for a in self.args)
        return (s.ttft_ms + s.itl_ms * max(0, pieces - 1)) / 1000.0

    def _tool_calls(self) -> list[dict[str, Any]]:
        return [{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for i, c in enumerate(self.answer.tool_calls)]

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if not self.emu.personality.strip_reasoning:
            message[self.emu.personality.reasoning_field] = "".join(self.reasoning)
        if self.answer.tool_calls:
            message["tool_calls"] = self._tool_calls()
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish}], "usage": self.usage()}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if usage:
            choice["usage"] = self.usage()
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice]}

    def _events(self) -> list[tuple[float, dict[str, Any] | str]]:
        """The stream as (delay before it in ms, event) pairs; an event is a chunk dict or a raw line."""
        s = self.emu.settings
        p = self.emu.personality
        events: list[tuple[float, dict[str, Any] | str]] = [(0.0, self._chunk({"role": "assistant", "content": ""}))]
        first = True
        pending = 0.0  # time spent on pieces a lossy relay swallowed

        def token(delta: dict[str, Any] | None) -> None:
            nonlocal first, pending
            delay = (s.ttft_ms if first else s.itl_ms) + pending
            first = False
            if delta is None:
                pending = delay
                return
            if self.first_token_event is None:
                self.first_token_event = len(events)
            events.append((delay, self._chunk(delta)))
            pending = 0.0

        if not p.strip_reasoning:
            events.append((0.0, self._chunk({p.reasoning_field: ""})))
        for piece in self.reasoning:
            token(None if p.strip_reasoning else {p.reasoning_field: piece})
        if self.reasoning and not p.strip_reasoning:
            events.append((0.0, self._chunk({p.reasoning_field: ""})))
        for piece in self.content:
            token({"content": piece})
        for i, (call, pieces) in enumerate(zip(self.answer.tool_calls, self.args, strict=True)):
            token({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                   "function": {"name": call.name, "arguments": ""}}]})
            for piece in pieces:
                token({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})  # on every delta, as Moonshot
        if p.litellm:  # the proxy strips the upstream's usage; asked for it, it sends its own estimate
            events.append((0.0, self._chunk({}, self.finish)))
            if self.client_usage:
                completion = self.usage()["completion_tokens"]
                events.append((0.0, {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                     "model": self.model, "choices": [],
                                     "usage": litellm.estimated_usage(self.body, completion)}))
            return events
        events.append((0.0, self._chunk({}, self.finish, usage=True)))
        if (self.body.get("stream_options") or {}).get("include_usage"):
            events.append((0.0, {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                 "model": self.model, "choices": [], "usage": self.usage()}))
        return events

    async def stream(self, late_error: ApiError | None, stream_fault: str | None) -> AsyncIterator[bytes]:
        p = self.emu.personality
        prefix = "data:" if p.tight_data_prefix else "data: "
        first_sent: float | None = None
        try:
            if p.keepalive_comment:
                yield f"{p.keepalive_comment}\n\n".encode()
            events = self._events()
            if late_error is not None:
                events = [events[0], (self.emu.settings.ttft_ms, {**p.error_body(late_error)})]
            cut_at = len(events) // 2 if stream_fault in ("cut", "malformed") else None
            for i, (delay_ms, event) in enumerate(events):
                if cut_at is not None and i == cut_at:
                    if stream_fault == "malformed":
                        yield f'{prefix}{{"choices": [{{"delta": {{"content": "tru\n\n'.encode()
                        continue
                    return
                if i == self.first_token_event:
                    delay_ms = (self.arrived - time.monotonic()) * 1000.0 + delay_ms
                if delay_ms > 0:
                    await asyncio.sleep(delay_ms / 1000.0)
                yield f"{prefix}{json.dumps(event)}\n\n".encode()
                if i == self.first_token_event:  # resumed once the server has written the token to the socket
                    first_sent = time.monotonic()
            if late_error is None:
                if self.stamp and first_sent is not None:  # the server's TTFT, an SSE comment (Moonshot sends none)
                    yield f"{SERVER_TTFT}{int((first_sent - self.arrived) * 1e6)}\n\n".encode()
                yield f"{prefix}[DONE]\n\n".encode()
        finally:
            self.emu.plan.release()
