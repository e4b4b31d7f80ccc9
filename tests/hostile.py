"""A hostile OpenAI-compatible server playing the model: it answers each chat request with the next scripted tool call
(reasoning included, as a thinking model must) and keeps every request it was sent, so a test can check what reached it."""

from __future__ import annotations

import json
from typing import Any

from .fakeserver import FakeServer, JsonHandler


class HostileModel(FakeServer):
    """Serve on loopback; `script` is a list of (tool name, arguments); after it, the model calls finish."""

    def __init__(self, script: list[tuple[str, dict[str, Any]]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                owner.requests.append(self.read_json())
                self.send_json(owner.answer(len(owner.requests) - 1))

        self.serve(Handler)

    def answer(self, index: int) -> dict[str, Any]:
        name, arguments = self.script[index] if index < len(self.script) else ("finish", {"summary": "done"})
        call = {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        message = {"role": "assistant", "content": "", "reasoning_content": f"Step {index}: I call {name}.",
                   "tool_calls": [call]}
        return {"id": f"chatcmpl-{index}", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}

    def tool_results(self) -> list[str]:
        """Every tool result the model was sent (the last request holds them all)."""
        if not self.requests:
            return []
        return [str(m.get("content")) for m in self.requests[-1]["messages"] if m.get("role") == "tool"]
