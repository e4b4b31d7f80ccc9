"""A hostile OpenAI-compatible server playing the model: it answers each chat request with the next scripted tool call
(reasoning included, as a thinking model must) and keeps every request it was sent, so a test can check what reached it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HostileModel:
    """Serve on loopback; `script` is a list of (tool name, arguments); after it, the model calls finish."""

    def __init__(self, script: list[tuple[str, dict[str, Any]]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                owner.requests.append(body)
                self._send(owner.answer(len(owner.requests) - 1))

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "kimi-k2.7-code", "object": "model"}]})

            def _send(self, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

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

    def start(self) -> HostileModel:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
