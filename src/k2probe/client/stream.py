"""Assemble a streamed chat completion from its chunks, stamping time as each chunk arrives (contract §4, §11)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Listener = Callable[[str, str], None]  # (kind: "reasoning" | "content", text)

REASONING_KEYS = ("reasoning_content", "reasoning")


@dataclass
class ToolCallParts:
    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: str = ""

    def as_message(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class StreamAccumulator:
    """Collects content, reasoning, tool-call deltas (with or without `index`) and usage from either place."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    reasoning_field: str | None = None
    tool_calls: dict[int, ToolCallParts] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    usage_location: str | None = None
    chunks: int = 0
    first_token_at: float | None = None
    first_content_at: float | None = None
    last_token_at: float | None = None
    token_times: list[float] = field(default_factory=list)
    model: str | None = None
    response_id: str | None = None
    shape: set[str] = field(default_factory=set)
    listener: Listener | None = None
    _last_index: int = -1

    def feed(self, chunk: dict[str, Any], now: float | None = None) -> None:
        """Take one parsed chunk; `now` is when its bytes arrived (defaults to the current time)."""
        now = time.perf_counter() if now is None else now
        self.chunks += 1
        self.shape.update(f"chunk.{key}" for key in chunk)
        self.model = self.model or chunk.get("model")
        self.response_id = self.response_id or chunk.get("id")
        if chunk.get("usage"):
            self.usage, self.usage_location = chunk["usage"], "top-level chunk"
        choices = chunk.get("choices") or []
        if not choices:
            return
        choice = choices[0]
        if choice.get("usage"):
            self.usage, self.usage_location = choice["usage"], "choices[0].usage"
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        self.shape.update(f"chunk.choices[].delta.{key}" for key in delta)
        carried = False
        for key in REASONING_KEYS:
            text = delta.get(key)
            if isinstance(text, str):
                self.reasoning_field = self.reasoning_field or key
                if text:
                    self.reasoning.append(text)
                    carried = True
                    if self.listener:
                        self.listener("reasoning", text)
        text = delta.get("content")
        visible = False
        if isinstance(text, str) and text:
            self.content.append(text)
            visible = True
            if self.listener:
                self.listener("content", text)
        for call in delta.get("tool_calls") or []:
            self._feed_tool_call(call)
            visible = True
        if visible or carried:
            self._stamp(now, visible)

    def _feed_tool_call(self, call: dict[str, Any]) -> None:
        index = call.get("index")
        if index is None:
            # No index: a delta with an id opens a new call; one without continues the last one.
            index = self._last_index + 1 if call.get("id") or self._last_index < 0 else self._last_index
        self._last_index = index
        parts = self.tool_calls.setdefault(index, ToolCallParts())
        parts.id = call.get("id") or parts.id
        parts.type = call.get("type") or parts.type
        function = call.get("function") or {}
        if function.get("name") and not parts.name:
            parts.name = function["name"]
        parts.arguments += function.get("arguments") or ""

    def _stamp(self, now: float, visible: bool) -> None:
        if self.first_token_at is None:
            self.first_token_at = now
        if visible and self.first_content_at is None:
            self.first_content_at = now
        self.token_times.append(now)
        self.last_token_at = now

    # ---- results -------------------------------------------------------------------------------------------------
    def inter_token_ms(self) -> list[float]:
        """Gaps between token-carrying chunks after the first one (TTFT excluded)."""
        times = self.token_times
        return [(b - a) * 1000.0 for a, b in itertools.pairwise(times)]

    def message(self) -> dict[str, Any]:
        """The assistant message as received, ready to go back into history unchanged."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.reasoning_field:
            message[self.reasoning_field] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i].as_message() for i in sorted(self.tool_calls)]
        return message
