"""The load test's client: HTTP/1.1 by hand (load/h1.py) and orjson straight on the wire, no SDK object model. One
request's timings are stamped from its bytes onto the wire and each SSE line's kernel arrival, as the main client
does."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpcore2
import httpx2
import orjson

from k2probe.client.wire import SOCKET_OPTIONS, arrival, proxy_for, stamped
from k2probe.core import stamps
from k2probe.core.failures import Failure, from_body
from k2probe.core.records import token_count
from k2probe.load.h1 import Pool, ProtocolError


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
    """Requests on keep-alive connections of their own: load/h1.py's HTTP/1.1 over kernel-stamped sockets, a free list
    of idle connections instead of a pool scanned per request. Through a proxy the environment names, httpcore's proxy
    pool instead (stamped as the main client's)."""

    def __init__(self, base_url: str, key: str, headers: dict[str, str] | None = None, connections: int = 1000,
                 timeout_s: float = 600.0) -> None:
        url = httpx2.URL(base_url.rstrip("/") + "/chat/completions")
        self.url = str(url)
        secure = url.scheme == "https"
        self.host, self.port = url.host, url.port or (443 if secure else 80)
        ssl_context = httpx2.create_ssl_context() if secure else None
        self.pool = Pool(self.host, self.port, ssl_context, connections, SOCKET_OPTIONS)
        self.timeout_s = timeout_s
        self.timeouts = {"connect": 10.0, "read": timeout_s, "write": timeout_s, "pool": None}
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.headers = [(b"Host", url.netloc), (b"Authorization", f"Bearer {key}".encode()),
                        (b"Content-Type", b"application/json"),
                        (stamps.STAMP_HEADER.encode(), b"1"),  # k2probe's emulator: stamp its TTFT
                        *extra]
        # every request's head but its length, written once: the request line and headers as bytes
        self.head = b"".join([b"POST ", url.raw_path, b" HTTP/1.1\r\n",
                              *(name + b": " + value + b"\r\n" for name, value in self.headers),
                              b"Content-Length: "])
        proxy = proxy_for(url)
        # a proxy, or a platform that cannot read with recvmsg on a selector loop (Windows): httpcore's pool
        self.pooled = None if proxy is None and hasattr(socket.socket, "recvmsg") else stamped(
            httpx2.AsyncHTTPTransport(proxy=proxy, socket_options=SOCKET_OPTIONS,
                                      limits=httpx2.Limits(max_connections=connections,
                                                           max_keepalive_connections=connections)))

    async def aclose(self) -> None:
        self.pool.close()
        if self.pooled is not None:
            await self.pooled.aclose()

    async def shot(self, payload: bytes, stream: bool) -> Shot:
        at = time.time()
        try:
            async with asyncio.timeout(self.timeout_s):
                shot = await (self._direct(payload, stream) if self.pooled is None
                              else self._pooled(payload, stream))
        except (TimeoutError, httpcore2.TimeoutException):
            shot = Shot(False, "timeout")
        except (httpcore2.NetworkError, httpcore2.ProtocolError, httpcore2.ProxyError, httpcore2.UnsupportedProtocol,
                ProtocolError, OSError):
            shot = Shot(False, "unreachable")
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):  # not JSON, or not the shape asked
            shot = Shot(False, "malformed_response")
        shot.started_at = at
        return shot

    async def _direct(self, payload: bytes, stream: bool) -> Shot:
        data = b"".join((self.head, str(len(payload)).encode(), b"\r\n\r\n", payload))
        for attempt in (0, 1):
            connection = self.pool.take() or await self.pool.connect()
            t0 = time.perf_counter()  # the request onto the wire
            try:
                await connection.request(data)
                status, kind = await connection.head()
                break
            except (ConnectionError, ProtocolError):
                connection.close()
                # a kept connection the server closed as the request went out: once more on a new one
                if attempt or not connection.used:
                    raise
            except BaseException:  # a timeout, a cancellation: the connection is in an unknown state
                connection.close()
                raise
        connection.used = True
        try:
            if status >= 400:
                return _refused(status, (await connection.body()).decode("utf-8", "replace"), kind)
            if not stream:
                body = orjson.loads(await connection.body())
                usage = body.get("usage") or ((body.get("choices") or [{}])[0].get("usage")) or {}
                return Shot(True, e2e_us=int((connection.arrived - t0) * 1e6), status=status,
                            output_tokens=token_count(usage.get("completion_tokens")))
            read = await _read_stream(connection.pieces(), connection, t0)
            read.status = status
            return read
        finally:
            self.pool.give(connection)

    async def _pooled(self, payload: bytes, stream: bool) -> Shot:
        """Through httpcore's pool (a proxy): its trace stamps the request's own headers onto the wire."""
        assert self.pooled is not None
        wire: list[float] = []

        async def trace(name: str, _info: dict[str, Any]) -> None:
            if name.endswith(".send_request_headers.started"):
                wire.append(time.perf_counter())

        started = time.perf_counter()
        request = httpcore2.Request(b"POST", self.url, content=payload,
                                    headers=[*self.headers, (b"Content-Length", str(len(payload)).encode())],
                                    extensions={"trace": trace, "timeout": self.timeouts})
        response = await self.pooled._pool.handle_async_request(request)
        try:
            if response.status >= 400:
                text = (await _body(response)).decode("utf-8", "replace")
                kind = next((v.decode("latin-1") for k, v in response.headers if k.lower() == b"content-type"), "")
                return _refused(response.status, text, kind)
            t0 = wire[-1] if wire else started  # the request's own headers, not a proxy's CONNECT before it
            if not stream:
                body = orjson.loads(await _body(response))
                usage = body.get("usage") or ((body.get("choices") or [{}])[0].get("usage")) or {}
                return Shot(True, e2e_us=int((arrival(response) - t0) * 1e6), status=response.status,
                            output_tokens=token_count(usage.get("completion_tokens")))
            read = await _read_stream(_pieces(response), _Arrival(response), t0)
            read.status = response.status
            return read
        finally:
            await response.aclose()


def _refused(status: int, text: str, kind: str) -> Shot:
    """A 4xx/5xx answer as the failure its body names (core/failures.py's one taxonomy)."""
    parsed = from_body(status, text, kind)
    failure = parsed if isinstance(parsed, Failure) else Failure(status, "http_error", "")
    return Shot(False, failure.cause, status=status)


class _Arrival:
    """An httpcore response's latest read stamp, as a Connection gives its own (`arrived`)."""

    def __init__(self, response: httpcore2.Response) -> None:
        self.response = response

    @property
    def arrived(self) -> float:
        return arrival(self.response)


async def _read_stream(pieces: AsyncIterator[bytes], source: Any, t0: float) -> Shot:
    """SSE lines split from the bytes as they come, each stamped with its socket read's kernel arrival
    (`source.arrived`)."""
    shot = Shot(True)
    last: float | None = None
    first_read: float | None = None
    behind = False
    tokens = 0
    usage_tokens = 0
    finished = False
    pending = b""
    async for piece in pieces:
        now = source.arrived
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
    shot.e2e_us = int((source.arrived - t0) * 1e6)  # the whole answer, to its last byte
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
