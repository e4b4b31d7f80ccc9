"""The loopback HTTP server every hostile test model and gateway is built on: a handler with JSON helpers (and the
`/models` list) and a server that runs in a thread on 127.0.0.1 until stopped."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

MODELS = {"object": "list", "data": [{"id": "kimi-k2.7-code", "object": "model"}]}


class JsonHandler(BaseHTTPRequestHandler):
    """Quiet, reads a JSON body, answers JSON; GET answers the model list."""

    def log_message(self, *args: Any) -> None:
        pass

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def send_bytes(self, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, document: Any) -> None:
        self.send_bytes(json.dumps(document).encode())

    def do_GET(self) -> None:
        self.send_json(MODELS)


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, *_: Any) -> None:  # a client that hung up is what many of these tests provoke
        pass


class FakeServer:
    """Call `serve(Handler)` in `__init__`; then `start()`/`stop()` or use it as a context manager."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = _Quiet(("127.0.0.1", 0), handler)
        # stop() waits for the loop to look up: at the default 0.5 s poll that is ~0.25 s lost per server
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


VIA_PROXY = {"id": "x", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code",
             "choices": [{"index": 0, "finish_reason": "stop", "message": {
                 "role": "assistant", "content": "via proxy", "reasoning_content": "r"}}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


class ForwardProxy(FakeServer):
    """A plain HTTP forward proxy ($HTTP_PROXY) that answers every chat completion itself ("via proxy") and keeps,
    in `seen`, each request's absolute URL (what a proxy is asked for) and its Authorization."""

    def __init__(self) -> None:
        seen: list[tuple[str, str | None]] = []
        self.seen = seen

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                seen.append((self.path, self.headers.get("Authorization")))
                self.read_json()
                self.send_json(VIA_PROXY)

        self.serve(Handler)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])
