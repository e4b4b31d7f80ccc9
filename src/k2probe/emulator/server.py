"""Run the emulator: in a background thread on a free loopback port (tests, in-process use) or in the foreground."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict

import uvicorn
from starlette.applications import Starlette

from k2probe.core.errors import UsageError
from k2probe.core.netaddr import is_loopback
from k2probe.core.served import ThreadedServer
from k2probe.emulator.app import Emulator, create_app
from k2probe.emulator.protocol import LOOP, ArrivalProtocol
from k2probe.emulator.settings import EmulatorSettings


class EmulatorServer(ThreadedServer):
    """The emulator served by uvicorn in a daemon thread; `base_url` ends in /v1. Use as a context manager."""

    def __init__(self, settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings or EmulatorSettings()
        self.app = create_app(self.settings)
        # uvicorn binds itself: handing it a pre-bound socket left accepted connections with a 40 ms
        # Nagle/delayed-ACK stall on every reused keep-alive connection.
        super().__init__(uvicorn.Config(self.app, host=host, port=port, log_level="error", access_log=False,
                                        lifespan="off", http=ArrivalProtocol, loop=LOOP), "emulator")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def state(self) -> Emulator:
        emulator: Emulator = self.app.state.emulator
        return emulator


SETTINGS_ENV = "K2PROBE_EMULATOR_SETTINGS"


def app_from_env() -> Starlette:
    """The app each worker process builds (uvicorn factory): settings handed over as JSON in the environment (with
    `log`, each worker logs its own requests: a process of its own has no handler from the command)."""
    settings = EmulatorSettings(**json.loads(os.environ[SETTINGS_ENV]))
    if settings.log:
        log_requests()
    return create_app(settings)


def log_requests() -> None:
    """The request log (`--log`) to stderr, one timestamped line per request."""
    import logging

    logger = logging.getLogger("k2probe.emulator")
    if not logger.handlers:
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def check_exposure(host: str, api_key: str, allow_remote: bool) -> None:
    """Serve beyond this machine only when asked, and never with the key every k2probe user knows."""
    from k2probe.core.config import EMULATOR_KEY

    if is_loopback(host):
        return
    if not allow_remote:
        raise UsageError(f"--host {host} would serve the emulator beyond this machine",
                         fix="serve on 127.0.0.1, or add --allow-remote with an --api-key of your own")
    if api_key == EMULATOR_KEY:
        raise UsageError(f"--allow-remote with the default key would let anyone who can reach {host} use it",
                         fix="give --api-key a key of your own (e.g. --api-key \"$(openssl rand -hex 16)\")")


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, an address that cannot be served on (a busy port, a host not on this machine), before
    anything says it is serving there."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(infos[0][4])
    except OSError as exc:
        busy = getattr(exc, "errno", None) == 98
        raise UsageError(f"cannot serve on {host}:{port}: " + ("the port is in use" if busy else str(exc.strerror or exc)),
                         fix="choose another --port (or stop what listens there)" if busy
                         else "give --host an address of this machine, e.g. 127.0.0.1") from None


def serve_forever(settings: EmulatorSettings, host: str = "127.0.0.1", port: int = 8765, workers: int = 1) -> None:
    """Serve in the foreground until interrupted (the `k2probe emulator` command); `workers` > 1 serves from that
    many processes, each with its own state (fault plan, rate limits, files), all told the same latencies."""
    check_port(host, port)
    if workers <= 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", http=ArrivalProtocol, loop=LOOP)
        return
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    uvicorn.run("k2probe.emulator.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, http=ArrivalProtocol, loop=LOOP)
