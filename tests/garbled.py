"""A hostile OpenAI-compatible server that answers every chat request with the same raw bytes: a malformed completion,
a stream of malformed chunks, or a body trickled a byte at a time — what a broken or hostile gateway may send."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .fakeserver import FakeServer, JsonHandler

GOOD_MESSAGE = {"role": "assistant", "content": "```python\n    return 1\n```"}


def completion(message: Any = None, usage: Any = None, **extra: Any) -> bytes:
    """A chat completion document around `message` (a good one by default) and `usage`, as bytes."""
    document: dict[str, Any] = {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code",
                                "choices": [{"index": 0, "message": GOOD_MESSAGE if message is None else message,
                                             "finish_reason": "stop"}], **extra}
    if usage is not None:
        document["usage"] = usage
    return json.dumps(document).encode()


def chunk(delta: Any = None, usage: Any = None, finish: str | None = None) -> bytes:
    """One SSE chunk (a `data:` line and its blank line)."""
    document: dict[str, Any] = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0,
                                "model": "kimi-k2.7-code",
                                "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage is not None:
        document["usage"] = usage
    return b"data: " + json.dumps(document).encode() + b"\n\n"


class Garbled(FakeServer):
    """Serve on loopback: `plain` answers a non-streamed request (a list: the n-th request gets the n-th body, in a
    cycle), `chunks` a streamed one (followed by [DONE]); `trickle_s` sends the answer one byte at a time, that many
    seconds apart; `delay_s` waits before answering."""

    def __init__(self, plain: bytes | list[bytes] = b"", chunks: list[bytes] | None = None,
                 trickle_s: float | None = None, delay_s: float = 0.0) -> None:
        self.plains = plain if isinstance(plain, list) else [plain]
        self.chunks, self.trickle_s, self.delay_s = chunks or [], trickle_s, delay_s
        self.requests = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.read_json()
                with owner.lock:
                    index = owner.requests
                    owner.requests += 1
                time.sleep(owner.delay_s)
                streamed = bool(body.get("stream"))
                data = (b"".join([*owner.chunks, b"data: [DONE]\n\n"]) if streamed
                        else owner.plains[index % len(owner.plains)])
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream" if streamed else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    if owner.trickle_s is None:
                        self.wfile.write(data)
                        return
                    for i in range(len(data)):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(owner.trickle_s)
                except OSError:  # the client gave up: what the test wants
                    pass

        self.serve(Handler)

    def env(self) -> dict[str, str]:
        return {"AI_GATEWAY_API_KEY": "sk-garbled-test", "AI_GATEWAY_BASE_URL": self.base_url}
