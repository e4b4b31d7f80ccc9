"""A hostile OpenAI-compatible gateway for output attacks: it answers every chat request (streamed as SSE, one chunk per
piece, or whole) with text made from the request itself — so it can echo the caller's key back split across chunks —
and plays any text it is given: rich markup, terminal escape sequences, control characters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .fakeserver import FakeServer, JsonHandler

# (the key the caller sent, the request body) -> (reasoning pieces, content pieces)
Script = Callable[[str, dict[str, Any]], tuple[list[str], list[str]]]


class UntrustedGateway(FakeServer):
    """Serve on loopback until stop(); every request body is kept in `requests`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.read_json()
                owner.requests.append(body)
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                reasoning, content = owner.script(key, body)
                if body.get("stream"):
                    self._stream(reasoning, content)
                else:
                    message = {"role": "assistant", "content": "".join(content),
                               "reasoning_content": "".join(reasoning)}
                    self.send_json({"id": "chatcmpl-x", "object": "chat.completion", "created": 0,
                                "model": "kimi-k2.7-code",
                                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

            def _stream(self, reasoning: list[str], content: list[str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                deltas = [{"reasoning_content": r} for r in reasoning] + [{"content": c} for c in content]
                for delta in deltas:
                    self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _event(self, chunk: dict[str, Any]) -> None:
                document = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0,
                            "model": "kimi-k2.7-code", **chunk}
                self.wfile.write(b"data: " + json.dumps(document).encode() + b"\n\n")
                self.wfile.flush()

        self.serve(Handler)


def split(text: str, parts: int) -> list[str]:
    """`text` in `parts` pieces of (nearly) equal length."""
    step = -(-len(text) // parts)
    return [text[i:i + step] for i in range(0, len(text), step)]
