"""The load test's client: httpcore and orjson straight on the wire, no SDK object model. One request's timings are
stamped from httpcore's trace (headers onto the wire) and each SSE line's arrival, as the main client does."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpcore2
import httpx2
import orjson

from k2probe.client.wire import SOCKET_OPTIONS, StampedBackend, arrival, proxy_for, stamped
from k2probe.core import stamps
from k2probe.core.failures import Failure, from_body
from k2probe.core.records import token_count


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
    ttft_merged: bool = False  # the first token was read late, with a later one: its stamp is the later one's
    status: int | None = None  # the HTTP status, where an answer came
    started_at: float = 0.0  # wall-clock epoch seconds


class LeanClient:
    """Requests on keep-alive connections of their own: httpcore's HTTP/1.1 connection, a free list of idle ones
    instead of a pool scanned per request (which cost more than the request at 128 connections), kernel-stamped reads.
    Through a proxy the environment names, httpcore's proxy pool instead."""

    def __init__(self, base_url: str, key: str, headers: dict[str, str] | None = None, connections: int = 1000,
                 timeout_s: float = 600.0) -> None:
        url = httpx2.URL(base_url.rstrip("/") + "/chat/completions")
        self.url = str(url)
        secure = url.scheme == "https"
        self.origin = httpcore2.Origin(url.raw_scheme, url.raw_host, url.port or (443 if secure else 80))
        self.keep = connections  # idle connections kept at most
        self.idle: list[httpcore2.AsyncHTTPConnection] = []
        # kernel-stamped reads where the platform reads with recvmsg on a selector loop; anyio's otherwise (Windows)
        self.backend = StampedBackend() if hasattr(socket.socket, "recvmsg") else httpcore2.AnyIOBackend()
        self.ssl_context = httpx2.create_ssl_context() if secure else None
        self.timeouts = {"connect": 10.0, "read": timeout_s, "write": timeout_s, "pool": None}
        self.headers = [(b"Host", url.netloc), (b"Authorization", f"Bearer {key}".encode()),
                        (b"Content-Type", b"application/json"),
                        (stamps.STAMP_HEADER.encode(), b"1"),  # k2probe's emulator: stamp its TTFT
                        *((k.encode(), v.encode()) for k, v in (headers or {}).items())]
        proxy = proxy_for(url)
        self.proxied = None if proxy is None else stamped(httpx2.AsyncHTTPTransport(
            proxy=proxy, socket_options=SOCKET_OPTIONS, limits=httpx2.Limits(max_connections=connections,
                                                                            max_keepalive_connections=connections)))

    async def aclose(self) -> None:
        for connection in self.idle:
            await connection.aclose()
        self.idle.clear()
        if self.proxied is not None:
            await self.proxied.aclose()

    async def _connection(self) -> Any:
        if self.proxied is not None:
            return self.proxied._pool
        while self.idle:
            connection = self.idle.pop()
            if not connection.has_expired():  # the server may have closed it since (uvicorn: after 5 s idle)
                return connection
            await connection.aclose()
        return httpcore2.AsyncHTTPConnection(self.origin, ssl_context=self.ssl_context, keepalive_expiry=60.0,
                                             network_backend=self.backend, socket_options=SOCKET_OPTIONS)

    def _release(self, connection: Any) -> None:
        if isinstance(connection, httpcore2.AsyncHTTPConnection) and connection.is_idle() and len(self.idle) < self.keep:
            self.idle.append(connection)

    async def shot(self, payload: bytes, stream: bool) -> Shot:
        wire: list[float] = []

        async def trace(name: str, _info: dict[str, Any]) -> None:
            if name.endswith(".send_request_headers.started"):
                wire.append(time.perf_counter())

        at = time.time()
        shot = await self._shot(payload, stream, wire, trace)
        shot.started_at = at
        return shot

    async def _shot(self, payload: bytes, stream: bool, wire: list[float], trace: Any) -> Shot:
        started = time.perf_counter()
        request = httpcore2.Request(b"POST", self.url, content=payload,
                                    headers=[*self.headers, (b"Content-Length", str(len(payload)).encode())],
                                    extensions={"trace": trace, "timeout": self.timeouts})
        connection = await self._connection()
        try:
            response = await connection.handle_async_request(request)
            try:
                if response.status >= 400:
                    text = (await _body(response)).decode("utf-8", "replace")
                    kind = next((v.decode("latin-1") for k, v in response.headers if k.lower() == b"content-type"), "")
                    parsed = from_body(response.status, text, kind)
                    failure = parsed if isinstance(parsed, Failure) else Failure(response.status, "http_error", "")
                    return Shot(False, failure.cause, status=response.status)
                if not stream:
                    body = orjson.loads(await _body(response))
                    done = arrival(response)
                    t0 = wire[-1] if wire else started  # the request's own headers, not a proxy's CONNECT before it
                    usage = body.get("usage") or ((body.get("choices") or [{}])[0].get("usage")) or {}
                    return Shot(True, e2e_us=int((done - t0) * 1e6), status=response.status,
                                output_tokens=token_count(usage.get("completion_tokens")))
                read = await self._read_stream(response, wire[-1] if wire else started)
                read.status = response.status
                return read
            finally:
                await response.aclose()
                self._release(connection)
        except httpcore2.TimeoutException:
            return Shot(False, "timeout")
        except (httpcore2.NetworkError, httpcore2.ProtocolError, httpcore2.ProxyError, httpcore2.UnsupportedProtocol,
                OSError):
            return Shot(False, "unreachable")
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):  # not JSON, or not the shape asked
            return Shot(False, "malformed_response")

    @staticmethod
    async def _read_stream(response: httpcore2.Response, t0: float) -> Shot:
        """SSE lines split from the bytes as they come, each stamped with its socket read's kernel arrival."""
        shot = Shot(True)
        last: float | None = None
        first_read: float | None = None
        behind = False
        tokens = 0
        usage_tokens = 0
        finished = False
        pending = b""
        async for piece in _pieces(response):
            now = arrival(response)
            lines = (pending + piece).split(b"\n")
            pending = lines.pop()
            for raw in lines:
                line = raw.rstrip(b"\r")
                if line.startswith(STAMP):
                    shot.server_ttft_us = int(line[len(STAMP):].strip() or 0)
                    continue
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    continue
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
                            shot.ttft_us, first_read = int((now - t0) * 1e6), now
                            behind = time.perf_counter() - now > 0.001  # read over a ms after it arrived
                        elif now == first_read and behind:
                            shot.ttft_merged = True  # a later token came in that late read: its stamp is the later one
                        if text and shot.ttfc_us is None:
                            shot.ttfc_us = int((now - t0) * 1e6)
                        if last is not None:
                            shot.itl_us.append(int((now - last) * 1e6))
                        last = now
                    finished = finished or bool(choice.get("finish_reason"))
                if usage:
                    usage_tokens = token_count(usage.get("completion_tokens"))
        shot.e2e_us = int((arrival(response) - t0) * 1e6)  # the whole answer, to its last byte
        shot.output_tokens = usage_tokens or tokens
        if not finished:
            return Shot(False, "stream_cut")
        return shot


STAMP = stamps.SERVER_TTFT.encode()


def _pieces(response: httpcore2.Response) -> AsyncIterator[bytes]:
    body = response.stream
    assert isinstance(body, AsyncIterable)
    return aiter(body)


async def _body(response: httpcore2.Response) -> bytes:
    return b"".join([piece async for piece in _pieces(response)])
