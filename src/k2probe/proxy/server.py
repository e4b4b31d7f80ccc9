"""Serve the proxy with uvicorn in a thread of its own (the command watches it from the main thread; tests use it
as a context manager), on loopback unless asked otherwise."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import uvicorn

from k2probe.core.served import ThreadedServer
from k2probe.proxy.app import Proxy, create_app

SWITCH_S = 0.0002  # how long a thread holding the GIL keeps it from the serving loop at most


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (libuv's: each relayed chunk costs the loop less of its own time,
    measured by bench/bench_proxy.py), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class ProxyServer(ThreadedServer):
    """`base_url` ends in /v1: what the team's framework is pointed at."""

    def __init__(self, proxy: Proxy, host: str = "127.0.0.1", port: int = 0) -> None:
        self.proxy = proxy
        config = uvicorn.Config(create_app(proxy), host=host, port=port, log_level="error", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=5)
        super().__init__(config, "proxy", start_within_s=15.0, stop_within_s=10.0, run=self._run)

    def _run(self, server: uvicorn.Server) -> None:
        # another thread of this process holding the GIL (the store writer's feeder, the live line, an in-memory
        # store's recorder) would keep each socket call of the serving loop waiting up to 5 ms (Python's default
        # switch interval) to take it back — a relayed chunk's delay
        before = sys.getswitchinterval()
        sys.setswitchinterval(min(before, SWITCH_S))

        async def serve() -> None:
            try:
                await server.serve()
            finally:
                await self.proxy.aclose()

        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(serve())
        finally:  # the interpreter's setting is the process's: given back when the proxy stops
            sys.setswitchinterval(before)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"
