"""Serve the proxy with uvicorn in a thread of its own (the command watches it from the main thread; tests use it
as a context manager), on loopback unless asked otherwise."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from types import TracebackType

import uvicorn

from k2probe.proxy.app import Proxy, create_app

SWITCH_S = 0.0002  # how long a thread holding the GIL keeps it from the serving loop at most


class ProxyServer:
    """`base_url` ends in /v1: what the team's framework is pointed at."""

    def __init__(self, proxy: Proxy, host: str = "127.0.0.1", port: int = 0) -> None:
        self.proxy = proxy
        self.host, self.port = host, port
        config = uvicorn.Config(create_app(proxy), host=host, port=port, log_level="error", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name="k2probe-proxy")

    def _run(self) -> None:
        # the store's recorder thread holds the GIL while it writes; each socket call of the serving loop gives the GIL
        # up and would wait up to 5 ms (Python's default switch interval) to take it back — a relayed chunk's delay
        before = sys.getswitchinterval()
        sys.setswitchinterval(min(before, SWITCH_S))

        async def serve() -> None:
            try:
                await self._server.serve()
            finally:
                await self.proxy.aclose()

        try:
            asyncio.run(serve())
        finally:  # the interpreter's setting is the process's: given back when the proxy stops
            sys.setswitchinterval(before)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> ProxyServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the proxy did not start")
            time.sleep(0.005)
        if self.port == 0:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
