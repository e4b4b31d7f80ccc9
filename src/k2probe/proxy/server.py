"""Serve the proxy with uvicorn in a thread of its own (the command watches it from the main thread; tests use it
as a context manager), on loopback unless asked otherwise."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from typing import Any, cast

import uvicorn

from k2probe.core.served import ThreadedServer
from k2probe.proxy.app import CHAT_PATHS, TRANSPORT, Proxy, create_app
from k2probe.proxy.upstream import Pending

SWITCH_S = 0.0002  # how long a thread holding the GIL keeps it from the serving loop at most


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (libuv's: each relayed chunk costs the loop less of its own time,
    measured by bench/bench_proxy.py), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _protocol(proxy: Proxy) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol, which also hands a chat request to the proxy the moment its body is in — from
    the socket's callback, before the request's ASGI task starts, so a burst of requests goes on to the route without
    each waiting for the tasks of those before it — and gives the proxy the connection's transport, to write a
    route's stream from the route's socket callback ("auto", uvicorn's own choice, where httptools is missing)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class EarlyProtocol(HttpToolsProtocol):
        early: list[Pending]

        def on_message_complete(self) -> None:
            super().on_message_complete()
            try:
                self._early()
            except Exception:  # never the parser's error: the request's task sends it the usual way
                return

        def _early(self) -> None:
            cycle = self.cycle
            if cycle is None or self.parser.should_upgrade():
                return
            scope = cast(dict[str, Any], cycle.scope)
            if scope["method"] != "POST" or scope["path"] not in CHAT_PATHS or cycle.response_complete:
                return
            scope[TRANSPORT] = self.transport
            body = bytes(cycle.body)
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            if length is None or not length.isdigit() or int(length) != len(body):
                return  # part of the body was already read by the request's task: the task sends it
            pending = proxy.early(scope, body)
            if pending is not None:
                if not hasattr(self, "early"):
                    self.early = []
                self.early = [p for p in self.early if not p.adopted]
                self.early.append(pending)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            for pending in getattr(self, "early", ()):  # sent early, and no task will read its answer
                if not pending.adopted:
                    pending.abandon()

    return EarlyProtocol


class ProxyServer(ThreadedServer):
    """`base_url` ends in /v1: what the team's framework is pointed at."""

    def __init__(self, proxy: Proxy, host: str = "127.0.0.1", port: int = 0) -> None:
        self.proxy = proxy
        config = uvicorn.Config(create_app(proxy), host=host, port=port, log_level="error", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=5,
                                http=_protocol(proxy))
        super().__init__(config, "proxy", start_within_s=15.0, stop_within_s=10.0, run=self._run)

    def _run(self, server: uvicorn.Server) -> None:
        # another thread of this process holding the GIL (the store writer's feeder, the live line, an in-memory
        # store's recorder) would keep each socket call of the serving loop waiting up to 5 ms (Python's default
        # switch interval) to take it back — a relayed chunk's delay
        before = sys.getswitchinterval()
        sys.setswitchinterval(min(before, SWITCH_S))

        # what the process holds by now (its modules, the route, the profile) is never garbage: kept out of the
        # collector's full passes, which otherwise stop the relay for tens of milliseconds (56 ms seen mid-bench)
        gc.collect()
        gc.freeze()

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
