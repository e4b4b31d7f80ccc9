"""Serve the viewer: on loopback by default; beyond it only when asked, and then behind an access token made for this
run of the server (shown once when it starts, asked for by a form, kept only as its hash)."""

from __future__ import annotations

import hashlib
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from k2probe.core.errors import UsageError
from k2probe.core.netaddr import is_loopback
from k2probe.recording.store import Store


@dataclass(frozen=True)
class Listening:
    """Where the viewer answers, and the link to open (with the access token when one is asked)."""

    host: str
    port: int
    link: str
    token: str | None  # the access token the page asks for, when serving beyond loopback (shown once, never kept)


def bind(host: str, port: int, allow_remote: bool) -> tuple[socket.socket, str | None]:
    """The listening socket, and the access token when the host is not loopback (refused without --allow-remote)."""
    token = None
    if not is_loopback(host):
        if not allow_remote:
            raise UsageError(f"--host {host} would show your runs beyond this machine",
                             fix="serve on 127.0.0.1 (the default), or add --allow-remote: an access token made for "
                                 "this server is then shown once")
        token = secrets.token_urlsafe(24)
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        busy = exc.errno == 98
        raise UsageError(f"cannot serve on {host}:{port}: " + ("the port is in use" if busy else str(exc.strerror or exc)),
                         fix="choose another --port (or stop what listens there)" if busy
                         else "give --host an address of this machine, e.g. 127.0.0.1") from None
    return sock, token


def hosts_for(host: str, port: int) -> set[str]:
    """The Host header values the viewer answers to (anything else is a rebinding page, or a mistake)."""
    names = {host, f"[{host.strip('[]')}]"} if ":" in host else {host}
    if is_loopback(host):
        names |= {"localhost", "127.0.0.1", "[::1]"}
    allowed = {f"{name}:{port}" for name in names}
    return allowed | names if port == 80 else allowed  # a browser leaves the default port out of Host


def serve(store: Store, host: str, port: int, *, allow_remote: bool = False,
          on_ready: Callable[[Listening], None] | None = None) -> None:
    """Serve until interrupted."""
    import uvicorn

    from k2probe.view.app import create_app
    from k2probe.view.guard import Guard

    sock, token = bind(host, port, allow_remote)
    bound = sock.getsockname()[1]
    token_hash = None if token is None else hashlib.sha256(token.encode()).hexdigest()
    app = Guard(create_app(store), hosts=hosts_for(host, bound) if token is None else None, token_hash=token_hash)
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if on_ready:
        on_ready(Listening(host, bound, f"http://{shown}:{bound}/", token))
    del token
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])
