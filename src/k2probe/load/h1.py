"""The load test's HTTP/1.1, by hand: a keep-alive connection whose socket is watched by one reader registered for its
life (no epoll change per read), each read kernel-stamped; a request written in one send; the response's head and
body (Content-Length, chunked or to the close) parsed from bytes — a fifth of the CPU httpcore and h11 spend on the
same request, so the client measures the server rather than itself. TLS runs in memory over it (client/wire.py)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from k2probe.core import stamps


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response."""


class Channel:
    """A connected non-blocking socket read as bytes arrive: the reader stays registered while the connection lives,
    and each read keeps the kernel's stamp of its last bytes (`arrived`, on time.perf_counter)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.reads: deque[tuple[bytes, float]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.eof = False
        self.error: OSError | None = None
        self.arrived: float | None = None
        self.relay: Callable[[bytes, float], None] | None = None  # takes each read in the callback (b"": the end)
        stamps.enable(sock)
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(262144, stamps.ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.error, data = exc, b""
        if data:
            stamp = stamps.received(ancillary, time.perf_counter)
            if self.relay is not None:
                self.arrived = stamp
                self.relay(data, stamp)
                return
            self.reads.append((data, stamp))
        else:
            self.eof = True
            self.loop.remove_reader(self.sock.fileno())
            if self.relay is not None:
                self.relay(b"", time.perf_counter())
                return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def idle_and_open(self) -> bool:
        """Can the next request go on it: open, and nothing unasked for came (a server's close, stray bytes)?"""
        return not (self.eof or self.reads or self.sock.fileno() < 0)

    async def recv(self, _max_bytes: int = 0) -> bytes:
        while not self.reads:
            if self.error is not None:
                raise self.error
            if self.eof:
                return b""
            self.waiter = self.loop.create_future()
            await self.waiter
        data, self.arrived = self.reads.popleft()
        return data

    async def send(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < len(data):
            await self.loop.sock_sendall(self.sock, data[sent:])

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            if not self.eof:
                self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class Connection:
    """One HTTP/1.1 exchange at a time over a Channel (or TLS over one): `request` sends, `head` reads the status and
    headers, then `body` or `pieces` the body; `reusable` says whether the next request may follow on it."""

    def __init__(self, channel: Channel, stream: Any) -> None:
        self.channel = channel
        self.stream = stream  # recv/send/arrived: the channel, or client/wire.TLSStream over it
        self.buffer = b""
        self.reusable = False
        self.used = False  # has it carried a request before (a server may have closed it meanwhile)
        self.length: int | None = None
        self.chunked = False
        self.headers: list[tuple[bytes, bytes]] = []  # the latest response's, names lower-cased, as they came
        self._keep = False  # the response allows another request after it

    @property
    def arrived(self) -> float:
        arrived = self.stream.arrived
        return arrived if isinstance(arrived, float) else time.perf_counter()

    async def _more(self) -> None:
        data = await self.stream.recv(262144)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self.buffer += data

    async def request(self, data: bytes) -> None:
        self.reusable = False
        await self.stream.send(data)

    def request_now(self, data: bytes) -> asyncio.Future[None] | None:
        """`request` begun from a callback, without waiting: what the socket takes now is sent now (encrypted first
        over TLS); the rest of a large body goes on in a task, whose future is returned (None: all of it went)."""
        self.reusable = False
        wire = data if self.stream is self.channel else self.stream.encrypt(data)
        try:
            sent = self.channel.sock.send(wire)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent == len(wire):
            return None
        return asyncio.ensure_future(self.channel.send(wire[sent:]))

    async def head(self) -> tuple[int, str]:
        """The status and the Content-Type; the body's framing is kept for `body`/`pieces`."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > 65536:
                raise ProtocolError("response headers over 64 KiB")
            await self._more()
        lines = self.buffer[:end].split(b"\r\n")
        self.buffer = self.buffer[end + 4:]
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(rest[:3])
        kind, self.length, self.chunked, keep = "", None, False, version == b"HTTP/1.1"
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            self.headers.append((name, value.strip()))
            if name == b"content-length":
                try:
                    self.length = int(value)
                except ValueError:
                    raise ProtocolError("a Content-Length that is not a number") from None
            elif name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = keep and b"close" not in value.lower()
            elif name == b"content-type":
                kind = value.strip().decode("latin-1")
        if status in (204, 304) or 100 <= status < 200:
            self.length = 0
        self._keep = keep
        return status, kind

    async def body(self) -> bytes:
        return b"".join([piece async for piece in self.pieces()])

    async def pieces(self, joined: bool = False) -> AsyncIterator[bytes]:
        """The body as it comes, a piece per read (a chunk, with chunked framing; `joined`: every whole chunk a read
        brought, joined into one piece); `arrived` stamps the latest."""
        if self.chunked:
            async for piece in self._chunks(joined):
                yield piece
        elif self.length is not None:
            left = self.length
            while left > 0:
                if not self.buffer:
                    await self._more()
                piece, self.buffer = self.buffer[:left], self.buffer[left:]
                left -= len(piece)
                yield piece
        else:  # to the close
            while True:
                if self.buffer:
                    piece, self.buffer = self.buffer, b""
                    yield piece
                data = await self.stream.recv(262144)
                if not data:
                    self._keep = False
                    break
                self.buffer = data
        self.reusable = self._keep and not self.buffer

    def relay(self, on_piece: Callable[[bytes, float], bool],
              decode: Callable[[bytes], bytes] | None = None) -> asyncio.Future[bool] | None:
        """A chunked body handed over from the socket's reader callback as it arrives, no task woken per read: each
        read's whole chunks, joined (and decoded), go to `on_piece(piece, arrival stamp)`. The future is True at the
        body's end (the connection then as `pieces` leaves it), False once `on_piece` said stop (the rest is for
        `pieces`), or the error that broke the body. None: a body this cannot relay (not chunked; not read straight
        from the socket or through TLS in memory over it)."""
        channel = self.channel
        decrypt = None if self.stream is channel else getattr(self.stream, "decrypt", None)
        if not self.chunked or channel.relay is not None or (self.stream is not channel and (
                decrypt is None or getattr(self.stream, "raw", None) is not channel)):
            return None
        done: asyncio.Future[bool] = channel.loop.create_future()

        def end(result: bool | BaseException) -> None:
            channel.relay = None
            if done.done():
                return
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)

        def emit(parts: list[bytes], stamp: float) -> bool:
            piece = b"".join(parts) if len(parts) > 1 else parts[0]
            if decode is not None:
                piece = decode(piece)
            return not piece or on_piece(piece, stamp)

        def parse(stamp: float) -> None:
            parts: list[bytes] = []
            buffer = self.buffer
            while (end_ := buffer.find(b"\r\n")) >= 0:
                try:
                    size = int(buffer[:end_].split(b";", 1)[0], 16)
                except ValueError:
                    self.buffer = buffer
                    if parts:  # the whole chunks before it go on, as the awaited reader gives them
                        emit(parts, stamp)
                    raise ProtocolError("a chunk size that is not hexadecimal") from None
                if size == 0:  # the last chunk, then trailers (if any) and an empty line
                    rest = buffer[end_ + 2:]
                    if rest.startswith(b"\r\n"):
                        buffer = rest[2:]
                    elif (close := rest.find(b"\r\n\r\n")) >= 0:
                        buffer = rest[close + 4:]
                    else:
                        break
                    self.buffer = buffer
                    if parts:
                        emit(parts, stamp)
                    self.reusable = self._keep and not buffer
                    end(True)
                    return
                if len(buffer) < end_ + 2 + size + 2:
                    break
                parts.append(buffer[end_ + 2:end_ + 2 + size])
                buffer = buffer[end_ + 2 + size + 2:]
            self.buffer = buffer
            if parts and not emit(parts, stamp):
                end(False)

        def take(data: bytes, stamp: float) -> None:
            try:
                plain = decrypt(data) if decrypt is not None else data
                if plain:
                    self.buffer += plain
                if not data and (channel.eof or channel.error is not None):
                    raise channel.error or ConnectionResetError("the server closed the connection")
                parse(stamp)
            except Exception as exc:  # a broken body: the reader says it where it awaits the future
                end(exc)

        channel.relay = take
        parse_from = self.arrived
        try:
            plain = decrypt(b"") if decrypt is not None else b""  # over TLS: what was decrypted but not yet read
            self.buffer += plain
            parse(parse_from)
        except Exception as exc:
            end(exc)
        while channel.reads and not done.done():  # what came while nobody read
            data, stamp = channel.reads.popleft()
            channel.arrived = stamp
            take(data, stamp)
        if not done.done() and (channel.eof or channel.error is not None):
            take(b"", time.perf_counter())
        return done

    def _whole_chunk(self) -> bytes | None:
        """The next chunk if it is all in the buffer and not the last one (None: wait for the socket, or the end)."""
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return None
        try:
            size = int(self.buffer[:end].split(b";", 1)[0], 16)
        except ValueError:
            return None  # said by _chunks, which reads it next
        if size <= 0 or len(self.buffer) < end + 2 + size + 2:
            return None
        piece = self.buffer[end + 2:end + 2 + size]
        self.buffer = self.buffer[end + 2 + size + 2:]
        return piece

    async def _chunks(self, joined: bool = False) -> AsyncIterator[bytes]:
        while True:
            while (end := self.buffer.find(b"\r\n")) < 0:
                await self._more()
            try:
                size = int(self.buffer[:end].split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError("a chunk size that is not hexadecimal") from None
            if size == 0:  # the last chunk, then trailers (if any) and an empty line
                self.buffer = self.buffer[end + 2:]
                while not self.buffer.startswith(b"\r\n") and (close := self.buffer.find(b"\r\n\r\n")) < 0:
                    await self._more()
                self.buffer = self.buffer[2:] if self.buffer.startswith(b"\r\n") else self.buffer[close + 4:]
                return
            while len(self.buffer) < end + 2 + size + 2:
                await self._more()
            start = end + 2
            piece = self.buffer[start:start + size]
            self.buffer = self.buffer[start + size + 2:]
            if joined and (more := self._whole_chunk()) is not None:
                parts = [piece, more]
                while (more := self._whole_chunk()) is not None:
                    parts.append(more)
                piece = b"".join(parts)
            yield piece

    def close(self) -> None:
        self.reusable = False
        self.channel.close()


async def connect(backend: Any, host: str, port: int, ssl_context: ssl.SSLContext | None,
                  options: list[Any]) -> Connection:
    """A new connection: TCP by client/wire.StampedBackend (happy eyeballs), its socket then read by a Channel;
    TLS in memory over it for https."""
    from k2probe.client.wire import TLSStream

    raw = await backend.connect_tcp(host, port, timeout=10.0, socket_options=options)
    channel = Channel(raw.sock)
    if ssl_context is None:
        return Connection(channel, channel)
    tls = TLSStream(channel, ssl_context, host)  # type: ignore[arg-type]  # a Channel reads and sends as a _Stream
    try:
        await asyncio.wait_for(tls.handshake(), 10.0)
    except BaseException:
        channel.close()
        raise
    return Connection(channel, tls)


class Pool:
    """Keep-alive connections to one host: a free list (the latest returned taken first), at most `keep` idle; one
    the server closed while it sat idle (uvicorn does after 5 s) is dropped when taken, never handed out."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, keep: int,
                 options: list[Any]) -> None:
        from k2probe.client.wire import StampedBackend

        self.host, self.port, self.ssl_context, self.keep, self.options = host, port, ssl_context, keep, options
        self.idle: list[Connection] = []
        self.backend = StampedBackend()

    def take(self) -> Connection | None:
        """An idle connection still open, or None."""
        while self.idle:
            connection = self.idle.pop()
            if connection.channel.idle_and_open:
                return connection
            connection.close()
        return None

    async def connect(self) -> Connection:
        return await connect(self.backend, self.host, self.port, self.ssl_context, self.options)

    def give(self, connection: Connection, reusable: bool = True) -> None:
        """A connection done with: kept idle if it can carry another request and there is room, else closed."""
        if reusable and connection.reusable and len(self.idle) < self.keep:
            self.idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()
