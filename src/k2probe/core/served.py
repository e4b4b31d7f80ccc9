"""An ASGI app served by uvicorn in a daemon thread of this process — the emulator for tests and in-process use, the
proxy under its command — started, its port read back when it was 0, stopped; a context manager."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    import uvicorn


class ThreadedServer:
    """uvicorn's Server for `config`, run by `run(server)` (its `run` by default) in a thread named `name`."""

    def __init__(self, config: uvicorn.Config, name: str, *, start_within_s: float = 10.0, stop_within_s: float = 5.0,
                 run: Callable[[uvicorn.Server], None] | None = None) -> None:
        import uvicorn

        self.host, self.port = config.host, config.port  # port 0: uvicorn binds a free one, read back once started
        self.server = uvicorn.Server(config)
        self._start_within, self._stop_within = start_within_s, stop_within_s
        self._thread = threading.Thread(target=run or (lambda server: server.run()), args=(self.server,),
                                        daemon=True, name=f"k2probe-{name}")
        self._name = name

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self._start_within
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self._name} did not start")
            time.sleep(0.005)
        if self.port == 0:
            self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=self._stop_within)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
