"""The proxy's way to the route: HTTP/1.1 by hand (load/h1.py) on kernel-stamped keep-alive connections — TLS in
memory for https — kept on a free list, a twentieth of the CPU httpx spends on the same stream; through an HTTP proxy
the environment names (or where reads cannot be stamped with recvmsg), httpx2's pool instead, stamped as the main
client's. Either way an Answer: status, headers, the body decoded (gzip, deflate) piece by piece as it arrives, and
the kernel's arrival stamp of the latest piece."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx2

from k2probe.client.transport import POOL_LIMITS, request_seconds, stall_seconds
from k2probe.client.wire import SOCKET_OPTIONS, arrival, proxy_for, stamped
from k2probe.load.h1 import Connection, Pool, ProtocolError

_T = TypeVar("_T")
CONNECT_S = 5.0
ACCEPT_ENCODING = b"gzip, deflate"  # what the lean path decodes (httpx2 asks for the same)


class UpstreamError(Exception):
    """The route could not be reached, or its answer broke off or timed out; `name` says how, in a word."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(detail or name)
        self.name = name


class Watch:
    """One exchange's time limits — a stall (no byte for `stall` seconds while one is awaited) and a deadline for the
    whole — kept by one timer per stall period rather than one per read: on expiry the task is cancelled and `fired`
    says why, so the reader turns that cancellation into an UpstreamError."""

    def __init__(self, stall: float, total: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        now = self.loop.time()
        self.stall, self.deadline = stall, now + total
        self.last = now  # when the latest wait for the route began
        self.reading = True  # waiting for the route (not for our own client to take what came)
        self.fired: str | None = None
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(min(now + stall, self.deadline), self._check)

    def _check(self) -> None:
        now = self.loop.time()
        if now >= self.deadline:
            self.fired = f"the route's answer took over {request_seconds():g} s in all"
        elif self.reading and now - self.last >= self.stall:
            self.fired = f"the route sent nothing for {self.stall:g} s"
        else:
            at = self.last + self.stall if self.reading else now + self.stall
            self.handle = self.loop.call_at(min(at, self.deadline), self._check)
            return
        self.handle = None
        if self.task is not None:
            self.task.cancel()

    def wait(self) -> None:
        """A read of the route begins."""
        self.reading, self.last = True, self.loop.time()

    def timed_out(self) -> UpstreamError | None:
        """After a CancelledError: the timeout it was (the cancellation taken back), or None (someone else's)."""
        if self.fired is None:
            return None
        if self.task is not None:
            self.task.uncancel()
        return UpstreamError("ReadTimeout", self.fired)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def _decoder(headers: list[tuple[str, str]]) -> Callable[[bytes], bytes] | None:
    """The body's Content-Encoding undone as it comes (gzip, deflate, or none); an unknown one is passed as it is."""
    encoding = next((v.strip().lower() for k, v in headers if k == "content-encoding"), "")
    if encoding == "gzip":
        return zlib.decompressobj(zlib.MAX_WBITS | 32).decompress
    if encoding == "deflate":
        state: list[Any] = [zlib.decompressobj()]

        def inflate(data: bytes) -> bytes:  # zlib-wrapped as the RFC says, or raw as some servers send it
            try:
                return bytes(state[0].decompress(data))
            except zlib.error:
                if state[0].total_in:
                    raise
                state[0] = zlib.decompressobj(-zlib.MAX_WBITS)
                return bytes(state[0].decompress(data))
        return inflate
    return None


@contextlib.contextmanager
def _read_errors(watch: Watch) -> Iterator[None]:
    """A read of the route's answer, its failures as UpstreamError: the watch's timeout (the cancellation it caused
    taken back), a connection or a body that broke."""
    try:
        yield
    except asyncio.CancelledError:
        if (timeout := watch.timed_out()) is None:
            raise
        raise timeout from None
    except (OSError, ssl.SSLError, ProtocolError, zlib.error) as exc:
        raise UpstreamError(type(exc).__name__, str(exc)) from exc


class Answer:
    """The route's answer on a lean connection, its body read piece by piece; the connection goes back on the free
    list when the body was read to its end and the server allows another request on it."""

    def __init__(self, upstream: Upstream, connection: Connection, status: int, kind: str, watch: Watch) -> None:
        self.upstream, self.connection, self.watch = upstream, connection, watch
        self.status, self.kind = status, kind
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in connection.headers]
        self.decode = _decoder(self.headers)  # one for the body, however it is read
        self.complete = self.closed = False
        self.relaying = False  # its body went (or began to go) from the socket's callback

    @property
    def arrived(self) -> float:
        return self.connection.arrived

    async def relayed(self, on_piece: Callable[[bytes, float], bool]) -> bool | None:
        """The body handed to `on_piece(piece, arrival)` from the socket's callback as it arrives (load/h1's
        Connection.relay): True once all of it went, False when `on_piece` asked to stop (the rest is for `pieces`),
        None when this body cannot go that way (it is then all for `pieces`)."""
        watch = self.watch

        def piece(data: bytes, stamp: float) -> bool:
            watch.wait()  # a stall counts from the latest piece
            return on_piece(data, stamp)

        done = self.connection.relay(piece, self.decode)
        if done is None:
            return None
        self.relaying = True
        try:
            with _read_errors(watch):
                finished = await done
        finally:
            self.connection.channel.relay = None
        self.complete = finished
        return finished

    async def pieces(self) -> AsyncIterator[bytes]:
        decode = self.decode
        watch = self.watch
        with _read_errors(watch):
            async for piece in self.connection.pieces(joined=True):
                if decode is not None:
                    piece = decode(piece)
                if piece:
                    watch.reading = False
                    yield piece
                    watch.wait()
        self.complete = True

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.pieces()])

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.watch.close()
        connection = self.connection
        self.upstream.pool.give(connection, reusable=self.complete)


class PooledAnswer:
    """The route's answer through httpx2 (its read timeouts are httpx2's own)."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.status, self.kind = response.status_code, response.headers.get("content-type", "")
        self.headers = [(k.lower(), v) for k, v in response.headers.items()]

    @property
    def arrived(self) -> float:
        return arrival(self.response)

    async def pieces(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self.response.aiter_bytes():
                yield piece
        except httpx2.HTTPError as exc:
            raise UpstreamError(type(exc).__name__, str(exc)) from exc

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.pieces()])

    async def aclose(self) -> None:
        await self.response.aclose()


class Pending:
    """A request sent on a lean connection, its answer's head still to come; sent again once on a new connection if
    a kept one turns out closed by the route before any answer."""

    def __init__(self, upstream: Upstream, data: bytes, stamps: dict[str, float], connection: Connection | None = None,
                 sending: asyncio.Future[None] | None = None) -> None:
        self.upstream, self.data, self.stamps = upstream, data, stamps
        self.connection, self.sending = connection, sending  # already on its way (Upstream.send_now)
        # the time limits, kept on the task that reads the answer (a request sent from a callback has none yet)
        self.watch: Watch | None = Watch(stall_seconds(), request_seconds()) if connection is None else None

    @property
    def adopted(self) -> bool:
        """Has a task taken its answer on (False only for a request sent early whose reader has not started)."""
        return self.watch is not None

    async def guarded(self, operation: Awaitable[_T]) -> _T:
        """Run a step of the exchange, its failures as UpstreamError, the watch closed on any."""
        assert self.watch is not None
        try:
            return await operation
        except asyncio.CancelledError:
            self.abandon()
            if (timeout := self.watch.timed_out()) is None:
                raise
            raise timeout from None
        except (OSError, ssl.SSLError, ProtocolError) as exc:
            self.abandon()
            raise UpstreamError(type(exc).__name__, str(exc)) from exc
        except BaseException:
            self.abandon()
            raise

    async def send(self, fresh: bool = False) -> None:
        for attempt in (0, 1):
            connection = self.connection = await self.upstream._connection(self.stamps, fresh=fresh or attempt > 0)
            self.stamps["wire"] = time.perf_counter()
            try:
                await connection.request(self.data)
                return
            except ConnectionError:
                connection.close()
                if attempt or not connection.used:  # a kept connection the route had closed: once more, on a new one
                    raise

    async def _head(self) -> tuple[Connection, int, str]:
        for attempt in (0, 1):
            if attempt:
                await self.send(fresh=True)
            connection = self.connection
            assert connection is not None
            try:
                if self.sending is not None:  # the rest of a body begun early
                    sending, self.sending = self.sending, None
                    await sending
                status, kind = await connection.head()
            except (ConnectionError, ProtocolError):
                connection.close()
                if attempt or not connection.used:  # no byte of an answer on a kept connection: send it once more
                    raise
                continue
            connection.used = True
            return connection, status, kind
        raise AssertionError("unreachable")

    async def answer(self) -> Answer:
        if self.watch is None:
            self.watch = Watch(stall_seconds(), request_seconds())
        connection, status, kind = await self.guarded(self._head())
        return Answer(self.upstream, connection, status, kind, self.watch)

    def abandon(self) -> None:
        """No answer will be read: the watch stopped, the connection closed."""
        if self.watch is not None:
            self.watch.close()
        if self.sending is not None:
            self.sending.cancel()
        if self.connection is not None:
            self.connection.close()


class PooledPending:
    """A request for httpx2's pool: sent when its answer is asked for."""

    def __init__(self, upstream: Upstream, path: str, body: bytes, stamps: dict[str, float]) -> None:
        self.upstream, self.path, self.body, self.stamps = upstream, path, body, stamps

    async def answer(self) -> PooledAnswer:
        return await self.upstream._pooled(self.path, self.body, self.stamps)

    def abandon(self) -> None:
        return None


class Upstream:
    """The route's base URL with its headers (its key among them); `post` sends a chat request, `get` the rest."""

    def __init__(self, base_url: str, headers: dict[str, str], keep: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self._client: httpx2.AsyncClient | None = None
        self._heads: dict[str, bytes] = {}
        url = httpx2.URL(self.base_url + "/chat/completions")
        secure = url.scheme == "https"
        self.host, self.port = url.host, url.port or (443 if secure else 80)
        self.netloc = url.netloc
        # idle connections kept at most: the SDK's own keep-alive limit
        self.pool = Pool(self.host, self.port, httpx2.create_ssl_context() if secure else None, keep, SOCKET_OPTIONS)
        self.proxy = proxy_for(url)
        lines = [f"{k}: {v}" for k, v in headers.items()]
        # the lean path: plain http or https, no HTTP proxy, reads stamped by recvmsg, headers that are one line each
        self.lean = (url.scheme in ("http", "https") and self.proxy is None and hasattr(socket.socket, "recvmsg")
                     and not any(c in line for line in lines for c in "\r\n\0"))

    def client(self) -> httpx2.AsyncClient:
        """httpx2, made in the serving loop on first use: pooled, TCP_NODELAY, kernel-stamped reads, through the
        environment's HTTP proxy for this route if it names one."""
        if self._client is None:
            transport = stamped(httpx2.AsyncHTTPTransport(proxy=self.proxy, socket_options=SOCKET_OPTIONS,
                                                          limits=POOL_LIMITS))
            self._client = httpx2.AsyncClient(transport=transport, limits=POOL_LIMITS,
                                              timeout=httpx2.Timeout(request_seconds(), connect=CONNECT_S,
                                                                     read=stall_seconds()))
        return self._client

    async def aclose(self) -> None:
        self.pool.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get(self, path: str) -> tuple[int, bytes, str]:
        """A GET (the models list): status, body, Content-Type."""
        try:
            answer = await self.client().get(self.base_url + path, headers=self.headers)
        except httpx2.HTTPError as exc:
            raise UpstreamError(type(exc).__name__, str(exc)) from exc
        return answer.status_code, answer.content, answer.headers.get("content-type", "application/json")

    async def post(self, path: str, body: bytes, stamps: dict[str, float]) -> Answer | PooledAnswer:
        """POST `body` to base URL + `path` and wait for the answer's head (`start`, then its `answer`)."""
        return await (await self.start(path, body, stamps)).answer()

    async def start(self, path: str, body: bytes, stamps: dict[str, float]) -> Pending | PooledPending:
        """Send a POST of `body` to base URL + `path`; its answer is awaited apart (`answer`), so what the caller
        still has to do (its checks) overlaps the route's work. `stamps` gets connect/tcp/tls/wire as
        client.transport's Clock reads them. Raises UpstreamError when the request could not go."""
        if not self.lean:
            return PooledPending(self, path, body, stamps)
        pending = Pending(self, self._request(path, body), stamps)
        await pending.guarded(pending.send())
        return pending

    def send_now(self, path: str, body: bytes) -> Pending | None:
        """`start` from a callback, without waiting: the request goes at once on an idle kept connection (its answer
        then read by a task, as `start`'s). None when it cannot go so — not the lean path, no idle connection, or a
        kept one found broken — and `start` is the way."""
        if not self.lean or (connection := self.pool.take()) is None:
            return None
        data = self._request(path, body)
        stamps = {"wire": time.perf_counter()}
        try:
            sending = connection.request_now(data)
        except (OSError, ssl.SSLError):
            connection.close()
            return None
        return Pending(self, data, stamps, connection, sending)

    def _request(self, path: str, body: bytes) -> bytes:
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = self._head(path)
        return b"".join((head, str(len(body)).encode(), b"\r\n\r\n", body))

    def _head(self, path: str) -> bytes:
        url = httpx2.URL(self.base_url + path)
        lines = [b"POST " + url.raw_path + b" HTTP/1.1", b"Host: " + self.netloc,
                 *(f"{k}: {v}".encode() for k, v in self.headers.items()), b"Accept-Encoding: " + ACCEPT_ENCODING,
                 b"Content-Length: "]
        return b"\r\n".join(lines)

    async def _connection(self, stamps: dict[str, float], fresh: bool = False) -> Connection:
        if not fresh and (connection := self.pool.take()) is not None:
            return connection
        stamps["connect"] = time.perf_counter()
        try:
            async with asyncio.timeout(CONNECT_S):
                connection = await self.pool.connect()
        except TimeoutError:
            raise UpstreamError("ConnectTimeout", f"no connection to the route within {CONNECT_S:g} s") from None
        except Exception as exc:  # StampedBackend raises httpcore's ConnectError / ConnectTimeout
            raise UpstreamError(type(exc).__name__, str(exc)) from exc
        stamps["tls" if self.pool.ssl_context is not None else "tcp"] = time.perf_counter()
        return connection

    async def _pooled(self, path: str, body: bytes, stamps: dict[str, float]) -> PooledAnswer:
        async def trace(name: str, _info: dict[str, Any]) -> None:
            for suffix, key in _TRACE:
                if name.endswith(suffix):
                    stamps[key] = time.perf_counter()

        client = self.client()
        request = client.build_request("POST", self.base_url + path, content=body, headers=self.headers,
                                       extensions={"trace": trace})
        try:
            return PooledAnswer(await client.send(request, stream=True))
        except httpx2.HTTPError as exc:
            raise UpstreamError(type(exc).__name__, str(exc)) from exc


_TRACE = ((".connect_tcp.started", "connect"), (".connect_tcp.complete", "tcp"), (".start_tls.complete", "tls"),
          (".send_request_headers.started", "wire"))
