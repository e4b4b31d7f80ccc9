"""The floor of any relay on this machine: a byte pipe in Python (uvloop where installed, as the proxy serves) that
reads nothing and keeps nothing — each client connection piped to a connection of its own to the route. What
`k2probe proxy` adds beyond what this adds is the proxy's own work; what this adds is one more process and one more
loopback hop, on cores the emulator and the client share.

Run: python bench/tcp_pipe.py LISTEN_PORT ROUTE_PORT   (bench_proxy.py starts it as its "TCP pipe" target)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import cast


class _Upstream(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self.client.transport is not None
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is not None:
            self.client.transport.close()


class _Client(asyncio.Protocol):
    def __init__(self, route: tuple[str, int]) -> None:
        self.route = route
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.waiting: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not asyncio's class, but writes as one
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        upstream, _ = await asyncio.get_running_loop().create_connection(lambda: _Upstream(self), *self.route)
        self.upstream = upstream
        for data in self.waiting:
            upstream.write(data)
        self.waiting.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.waiting.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def _serve(listen: int, route: int) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: _Client(("127.0.0.1", route)), "127.0.0.1",
                                                            listen)
    await server.serve_forever()


def main() -> None:
    listen, route = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(listen, route))
    else:
        uvloop.run(_serve(listen, route))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
