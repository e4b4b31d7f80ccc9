"""When a request arrived, as the kernel saw it: the moment the emulator's injected latency counts from. A request
stamped in the app instead would leave out the server's own queue — under a burst of hundreds of requests, the time
bytes wait for a busy loop — and a client measuring right would look slow by that much.

The emulator's loop reads accepted connections with recvmsg and the kernel's receive stamp (core.stamps); uvicorn's
HTTP protocol puts the stamp of a request's first bytes in its ASGI scope."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from asyncio import selector_events
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from k2probe.core import stamps

ARRIVED = "k2probe.arrived"  # the ASGI scope key: time.monotonic() when the request's first bytes reached the machine
RECEIVED = "k2probe_received"  # the protocol attribute the stamping transport sets before each data_received


# asyncio's private socket transport (Python 3.11–3.13): stamps need its read path; without it, reads go unstamped
_SocketTransport: Any = getattr(selector_events, "_SelectorSocketTransport", None)
_READS_HERE = _SocketTransport is not None and hasattr(_SocketTransport, "_read_ready__data_received")


class _StampedTransport(_SocketTransport or object):  # type: ignore[misc]
    """asyncio's socket transport, reading with recvmsg so each read carries the kernel's receive stamp."""

    def _read_ready__data_received(self) -> None:  # asyncio's own, with recvmsg for recv
        if self._conn_lost:
            return
        try:
            data, ancillary, _flags, _addr = self._sock.recvmsg(self.max_size, stamps.ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._read_ready__on_eof()
            return
        setattr(self._protocol, RECEIVED, stamps.received(ancillary, time.monotonic))
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")


class StampingLoop(asyncio.SelectorEventLoop):
    """The emulator's event loop (uvicorn `loop=`): connections it accepts are read by _StampedTransport."""

    def _start_serving(self, protocol_factory: Any, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        if _READS_HERE:
            stamps.enable(sock)  # on the listening socket too: a request that arrives before accept() is stamped
        super()._start_serving(protocol_factory, sock, *args, **kwargs)  # type: ignore[misc]

    def _make_socket_transport(self, sock: socket.socket, protocol: Any, waiter: Any = None, *,
                               extra: Any = None, server: Any = None) -> Any:
        if server is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets TCP_NODELAY only when the socket says IPPROTO_TCP, and a listening socket handed to
            # uvicorn's worker processes says 0: every small SSE write then waited 40 ms for a delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if (_READS_HERE and server is not None and not isinstance(protocol, asyncio.BufferedProtocol)
                and stamps.enable(sock)):
            return _StampedTransport(self, sock, protocol, waiter, extra, server)
        return super()._make_socket_transport(sock, protocol, waiter, extra=extra, server=server)  # type: ignore[misc]


# for uvicorn's `loop` setting: a selector loop everywhere but Windows (its TCP_NODELAY fix counts without stamps)
LOOP = "asyncio" if sys.platform == "win32" else f"{__name__}:StampingLoop"


class ArrivalProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """h11 or httptools, whichever uvicorn picks, with the request's arrival put in its ASGI scope."""

    def data_received(self, data: bytes) -> None:
        received = getattr(self, RECEIVED, None) or time.monotonic()
        super().data_received(data)
        cycle = getattr(self, "cycle", None)  # the request these bytes started, or the one before it (already stamped)
        if cycle is not None:
            cycle.scope.setdefault(ARRIVED, received)
