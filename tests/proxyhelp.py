"""Shared by the proxy tests: a proxy in front of an emulator, in this process, every handled request kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from k2probe.api import RunningEmulator
from k2probe.core.profiles import PROFILES
from k2probe.proxy.app import Handled, Mode, Proxy, Sink
from k2probe.proxy.server import ProxyServer


@dataclass
class Proxied:
    server: ProxyServer
    handled: list[Handled] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def settle(self, count: int, seconds: float = 10.0) -> list[Handled]:
        """The handled requests once `count` are in (a stream's record ends just after its last byte went out)."""
        deadline = time.monotonic() + seconds
        while len(self.handled) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return sorted(self.handled, key=lambda h: h.number)

    def kinds(self) -> list[list[str]]:
        return [[f.kind for f in h.findings] for h in sorted(self.handled, key=lambda h: h.number)]


@contextmanager
def proxied(emu: RunningEmulator, mode: Mode = "observe", **options: Any) -> Iterator[Proxied]:
    sink: Sink | None = options.pop("sink", None)
    extra = {"sink": sink} if sink is not None else {}
    proxy = Proxy(emu.route(), PROFILES["kimi-k2.7-code"], mode=mode, **extra, **options)
    with ProxyServer(proxy) as server:
        kept = Proxied(server)
        proxy.on_handled = kept.handled.append
        yield kept
