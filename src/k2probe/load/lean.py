"""The load test's client: httpx2 and orjson straight on the wire, no SDK object model. One request's timings are
stamped from httpcore's trace (headers onto the wire) and each SSE line's arrival, as the main client does."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson

from k2probe.client.wire import arrival, stamped
from k2probe.core.failures import Failure, from_body

SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


@dataclass
class Shot:
    """One request's fate: ok or the failure's cause, and its timings in microseconds (None where not reached)."""

    ok: bool
    cause: str | None = None
    ttft_us: int | None = None  # first token of any kind (reasoning included)
    ttfc_us: int | None = None  # first content token
    e2e_us: int | None = None
    itl_us: list[int] = field(default_factory=list)
    output_tokens: int = 0
    server_ttft_us: int | None = None  # what the server says its TTFT was (k2probe's emulator stamps it)


class LeanClient:
    def __init__(self, base_url: str, key: str, headers: dict[str, str] | None = None, connections: int = 1000,
                 timeout_s: float = 600.0) -> None:
        limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
        transport = stamped(httpx2.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS, limits=limits))
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.client = httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(timeout_s, connect=10.0),
                                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                                  "x-k2probe-stamp": "1",  # k2probe's emulator: stamp its TTFT
                                                  **(headers or {})})

    async def aclose(self) -> None:
        await self.client.aclose()

    async def shot(self, payload: bytes, stream: bool) -> Shot:
        wire: list[float] = []

        async def trace(name: str, _info: dict[str, Any]) -> None:
            if name.endswith(".send_request_headers.started"):
                wire.append(time.perf_counter())

        started = time.perf_counter()
        try:
            async with self.client.stream("POST", self.url, content=payload, extensions={"trace": trace}) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode("utf-8", "replace")
                    parsed = from_body(response.status_code, text, response.headers.get("content-type", ""))
                    failure = parsed if isinstance(parsed, Failure) else Failure(response.status_code, "http_error", "")
                    return Shot(False, failure.cause)
                if not stream:
                    body = orjson.loads(await response.aread())
                    done = arrival(response)
                    t0 = wire[0] if wire else started
                    usage = body.get("usage") or ((body.get("choices") or [{}])[0].get("usage")) or {}
                    return Shot(True, e2e_us=int((done - t0) * 1e6), output_tokens=int(usage.get("completion_tokens")
                                                                                           or 0))
                return await self._read_stream(response, wire[0] if wire else started)
        except httpx2.TimeoutException:
            return Shot(False, "timeout")
        except httpx2.HTTPError:
            return Shot(False, "unreachable")
        except orjson.JSONDecodeError:
            return Shot(False, "malformed_response")

    @staticmethod
    async def _read_stream(response: httpx2.Response, t0: float) -> Shot:
        shot = Shot(True)
        last: float | None = None
        tokens = 0
        usage_tokens = 0
        finished = False
        async for line in response.aiter_lines():
            if line.startswith(STAMP):
                shot.server_ttft_us = int(line[len(STAMP):].strip() or 0)
                continue
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                continue
            now = arrival(response)
            chunk = orjson.loads(data)
            if chunk.get("error") and not chunk.get("choices"):
                return Shot(False, "stream_error")
            usage = chunk.get("usage")
            choices = chunk.get("choices") or []
            if choices:
                choice = choices[0]
                usage = usage or choice.get("usage")
                delta = choice.get("delta") or {}
                text = delta.get("content")
                thought = delta.get("reasoning_content") or delta.get("reasoning")
                if text or thought or delta.get("tool_calls"):
                    tokens += 1
                    if shot.ttft_us is None:
                        shot.ttft_us = int((now - t0) * 1e6)
                    if text and shot.ttfc_us is None:
                        shot.ttfc_us = int((now - t0) * 1e6)
                    if last is not None:
                        shot.itl_us.append(int((now - last) * 1e6))
                    last = now
                finished = finished or bool(choice.get("finish_reason"))
            if usage:
                usage_tokens = int(usage.get("completion_tokens") or 0)
        shot.e2e_us = int((arrival(response) - t0) * 1e6)  # the whole answer, to its last byte
        shot.output_tokens = usage_tokens or tokens
        if not finished:
            return Shot(False, "stream_cut")
        return shot


STAMP = ": k2probe-server ttft_us="
