"""Bytes stamped by the kernel as they arrive: an httpcore network backend whose reads return, with the data, the time
the kernel received it (SO_TIMESTAMPNS), so a busy client loop — 200 streams on one core — does not inflate TTFT or ITL.

Plain TCP and TLS both read through `recvmsg`; TLS runs in memory (ssl.SSLObject) over the stamped socket. Where the OS
gives no receive stamp, a read is stamped when it returns, as any client would."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from asyncio import staggered
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import httpcore2
import httpx2

from k2probe.core import stamps

_T = TypeVar("_T")
# every TCP connection of both clients: small SSE writes are not held back by Nagle's algorithm (the stamped backend
# sets it itself; anyio's, where it stands in, takes it from here)
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class _Stream(httpcore2.AsyncNetworkStream):
    """What httpcore calls on a connection, over `recv`/`send` (a socket's, or TLS's over one) and its socket."""

    sock: socket.socket

    async def recv(self, max_bytes: int) -> bytes:
        raise NotImplementedError

    async def send(self, buffer: bytes) -> None:
        raise NotImplementedError

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await _bounded(self.recv(max_bytes), timeout, httpcore2.ReadTimeout, httpcore2.ReadError)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            await _bounded(self.send(buffer), timeout, httpcore2.WriteTimeout, httpcore2.WriteError)

    async def aclose(self) -> None:
        self.sock.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        return await _handshake(TLSStream(self, ssl_context, server_hostname), timeout)


class StampedStream(_Stream):
    """A non-blocking socket read with recvmsg; `arrived` is when the bytes of the latest read reached the kernel."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.arrived: float | None = None
        self.stamped = stamps.enable(sock)  # whether the kernel stamps this socket's reads

    async def _ready(self, add: Callable[..., None], remove: Callable[[int], bool]) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        add(fd, wake)
        try:
            await waiter
        finally:
            remove(fd)

    async def recv(self, max_bytes: int) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(max_bytes, stamps.ANCILLARY)
            except (BlockingIOError, InterruptedError):
                await self._ready(loop.add_reader, loop.remove_reader)
                continue
            self.arrived = stamps.received(ancillary, time.perf_counter)
            return data

    async def send(self, buffer: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, buffer)

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self.sock
        if info == "client_addr":
            return self.sock.getsockname()
        if info == "server_addr":
            return self.sock.getpeername()
        if info == "is_readable":
            return _readable(self.sock)
        return None


class TLSStream(_Stream):
    """TLS in memory over a stamped stream (a socket, or TLS itself: an HTTPS proxy's tunnel to an HTTPS server);
    decrypted bytes carry the arrival stamp of the socket read that brought their record."""

    def __init__(self, raw: _Stream, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self.raw, self.sock = raw, raw.sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.eof = False  # the peer closed the socket
        self._answering: asyncio.Future[None] | None = None  # TLS's own answer to the peer, sent from a callback
        self._broken: ssl.SSLError | None = None  # a decrypt that failed after giving what it had
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False, server_hostname=server_hostname)

    @property
    def arrived(self) -> float | None:
        return getattr(self.raw, "arrived", None)

    async def _run(self, operation: Callable[[], _T]) -> _T:
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.raw.recv(65536)
                if data:
                    self.incoming.write(data)
                else:
                    self.eof = True
                    self.incoming.write_eof()
                continue
            await self._flush()
            return result

    async def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            await self.raw.send(pending)

    async def handshake(self) -> None:
        await self._run(self.tls.do_handshake)

    async def recv(self, max_bytes: int) -> bytes:
        try:
            return await self._run(lambda: self.tls.read(max_bytes))
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLEOFError:
            if self.eof:  # closed without close_notify, as many servers do: the end of a body read to the close
                return b""
            raise

    async def send(self, buffer: bytes) -> None:
        await self._run(lambda: self.tls.write(buffer))

    def encrypt(self, data: bytes) -> bytes:
        """`data` as the records to put on the wire, for a writer that cannot wait (load/h1.Connection.request_now)."""
        self.tls.write(data)
        return self.outgoing.read()

    def decrypt(self, data: bytes) -> bytes:
        """Bytes from the socket in, the plaintext they complete out (b"" while a record is incomplete), for a reader
        in the socket's callback (load/h1.Connection.relay); what TLS has to say back (a key update) goes on after."""
        if self._broken is not None:
            raise self._broken
        if data:
            self.incoming.write(data)
        parts: list[bytes] = []
        while True:
            try:
                part = self.tls.read(262144)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            except ssl.SSLError as exc:  # what was read before it goes on; the error comes with the next read
                if not parts:
                    raise
                self._broken = exc
                break
            if not part:
                break
            parts.append(part)
        if self.outgoing.pending:  # sent now where the socket takes it, ahead of anything sent after
            answer = self.outgoing.read()
            try:
                sent = self.sock.send(answer)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(answer):
                self._answering = asyncio.ensure_future(self.raw.send(answer[sent:]))
        return b"".join(parts)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self.tls
        return self.raw.get_extra_info(info)


async def _handshake(tls: TLSStream, timeout: float | None) -> TLSStream:
    try:
        await _bounded(tls.handshake(), timeout, httpcore2.ConnectTimeout, httpcore2.ConnectError)
    except BaseException:
        tls.sock.close()
        raise
    return tls


async def _bounded(operation: Awaitable[_T], timeout: float | None, on_timeout: type[Exception],
                   on_error: type[Exception]) -> _T:
    """Run a socket operation within `timeout`, raising httpcore's own exceptions as its pool expects."""
    try:
        async with asyncio.timeout(timeout):
            return await operation
    except TimeoutError as exc:
        raise on_timeout(str(exc) or "timed out") from exc
    except (OSError, ssl.SSLError) as exc:
        raise on_error(str(exc) or type(exc).__name__) from exc


def _readable(sock: socket.socket) -> bool:
    """Has an idle connection something to read (the server closed it)? poll, not select: select cannot take a
    descriptor past 1024, and calling every one of those readable would discard every pooled connection."""
    import select

    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _numeric(host: str, port: int) -> list[Any] | None:
    """An IP literal's address, at once: asyncio's getaddrinfo takes a thread of a pool of a few, so a hundred
    connections opened together to 127.0.0.1 (a proxy's first burst) would queue there for tens of milliseconds."""
    try:
        return socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None


class StampedBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's backend for TCP connections whose reads are kernel-stamped; Unix sockets keep the default backend."""

    def __init__(self) -> None:
        self.fallback = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        return await _bounded(self._connect(host, port, local_address, list(socket_options or ())), timeout,
                              httpcore2.ConnectTimeout, httpcore2.ConnectError)

    async def _connect(self, host: str, port: int, local_address: str | None,
                       options: list[Any]) -> StampedStream:
        """Happy eyeballs (RFC 8305), as asyncio's own create_connection does it: addresses of both families in
        turn, a new attempt every 250 ms while earlier ones are pending, the first to connect wins — so an address
        that silently drops SYNs (IPv6 routed nowhere) costs 250 ms, not the whole connect timeout."""
        loop = asyncio.get_running_loop()
        infos = _numeric(host, port) or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"no address for {host}")
        infos = _interleave(infos)

        async def attempt(family: int, kind: int, proto: int, address: Any) -> socket.socket:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                if family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in options:
                    sock.setsockopt(*option)
                if local_address:
                    sock.bind((local_address, 0))
                await loop.sock_connect(sock, address)
            except BaseException:
                sock.close()
                raise
            return sock

        attempts = [functools.partial(attempt, family, kind, proto, address)
                    for family, kind, proto, _name, address in infos]
        sock, _index, failures = await staggered.staggered_race(attempts, 0.25)
        if sock is None:
            raise next((f for f in reversed(failures) if isinstance(f, OSError)), None) or OSError(
                f"could not connect to {host}:{port}")
        return StampedStream(sock)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        return await self.fallback.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _interleave(infos: list[Any]) -> list[Any]:
    """Addresses alternating between families, the first family first (RFC 8305 §4)."""
    by_family: dict[int, list[Any]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())
    ordered: list[Any] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def proxy_for(url: httpx2.URL) -> str | None:
    """The proxy the environment names for this URL (NO_PROXY applied), chosen as httpx chooses among its mounts."""
    from httpx2._utils import URLPattern, get_environment_proxies

    patterns = sorted(((URLPattern(pattern), proxy) for pattern, proxy in get_environment_proxies().items()),
                      key=lambda item: item[0])
    return next((proxy for pattern, proxy in patterns if pattern.matches(url)), None)


def stamped(transport: httpx2.AsyncHTTPTransport) -> httpx2.AsyncHTTPTransport:
    """The same transport, its pool (direct or through a proxy) connecting through StampedBackend."""
    pool = getattr(transport, "_pool", None)
    if pool is not None and hasattr(pool, "_network_backend") and hasattr(socket.socket, "recvmsg"):
        pool._network_backend = StampedBackend()
    return transport


def arrival(response: httpx2.Response | httpcore2.Response) -> float:
    """When the bytes just read from this response reached the machine: the kernel's stamp of the latest socket
    read, or now when there is none (another backend, an HTTP/2 stream, a platform without receive stamps)."""
    stream = response.extensions.get("network_stream")
    arrived = getattr(stream, "arrived", None)
    return arrived if isinstance(arrived, float) else time.perf_counter()
