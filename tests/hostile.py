"""A hostile OpenAI-compatible server playing the model: it answers each chat request with the next scripted tool call
(reasoning included, as a thinking model must) and keeps every request it was sent, so a test can check what reached it."""

from __future__ import annotations

import json
from typing import Any

from .fakeserver import FakeServer, JsonHandler


def is_route_check(body: Any) -> bool:
    """k2probe's one cheap request before eval/agent/bench (contexts.RouteContext.prove)."""
    from k2probe.contexts import ROUTE_CHECK

    messages = body.get("messages") if isinstance(body, dict) else None
    return isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict) \
        and messages[0].get("content") == ROUTE_CHECK and not body.get("tools")


def plain_answer(text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-check", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text, "reasoning_content": "A check."}}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}}


class HostileModel(FakeServer):
    """Serve on loopback; `script` is a list of (tool name, arguments); after it, the model calls finish."""

    def __init__(self, script: list[tuple[str, dict[str, Any]]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                if is_route_check(body):  # k2probe proving the route before its work: not a turn of the script
                    self.send_json(plain_answer("ok"))
                    return
                owner.requests.append(body)
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
