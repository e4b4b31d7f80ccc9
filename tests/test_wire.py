"""The stamped network layer under both clients, at its edges: connections a server closed, descriptors past 1024,
TLS closed without close_notify, answers that are JSON but not the shape asked for."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
from pydantic import SecretStr

from k2probe.client.transport import Transport
from k2probe.client.wire import stamped
from k2probe.core.config import Route
from k2probe.core.profiles import profile_for
from k2probe.load.lean import LeanClient

from .conftest import EMULATOR_KEY

BODY = json.dumps({"model": "kimi-k2.7-code", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "max_tokens": 4}).encode()


def test_the_load_client_never_reuses_a_connection_the_server_closed(emulator):
    """uvicorn closes a keep-alive connection after 5 s idle; the next request opens a new one, it does not fail."""
    server = emulator()

    async def run() -> list[Any]:
        client = LeanClient(server.base_url, EMULATOR_KEY)
        try:
            first = await client.shot(BODY, True)
            await asyncio.sleep(6)
            return [first, await client.shot(BODY, True)]
        finally:
            await client.aclose()

    shots = asyncio.run(run())
    assert [s.ok for s in shots] == [True, True], [s.cause for s in shots]


def test_keep_alive_holds_when_the_process_has_over_1024_descriptors(emulator):
    """Idle connections are checked with poll: select cannot take a descriptor past 1024 (every pooled connection
    would look closed, and each request would pay a new connect)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        server = emulator()
        route = Route(name="fd", base_url=server.base_url, api_key=SecretStr(EMULATOR_KEY), api_key_env="X",
                      model="kimi-k2.7-code")

        async def run() -> list[Any]:
            async with Transport(route, profile_for(route.model, None)) as transport:
                return [await transport.chat(json.loads(BODY)) for _ in range(4)]

        outcomes = asyncio.run(run())
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert all(o.ok for o in outcomes)
    opened = [o.last.connect_ms > 0 for o in outcomes]
    assert opened == [True, False, False, False], opened  # one connection, reused


def test_a_tls_body_read_to_the_close_without_close_notify_is_whole(tmp_path: Path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        tls = context.wrap_socket(conn, server_side=True)
        tls.recv(65536)
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello world")
        tls.close()  # no unwrap(): the TCP connection ends without TLS close_notify

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def get() -> httpx2.Response:
        transport = stamped(httpx2.AsyncHTTPTransport(verify=client_context))
        async with httpx2.AsyncClient(transport=transport) as client:
            return await client.get(f"https://localhost:{port}/")

    response = asyncio.run(get())
    thread.join(timeout=10)
    listener.close()
    assert response.status_code == 200 and response.text == "hello world"


def _raw_sse_server(chunks: list[bytes]) -> tuple[socket.socket, threading.Thread]:
    """An HTTP server that answers every request with these SSE data lines, then [DONE]."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(len(chunks)):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                body = b"".join(b"data: " + chunk + b"\n\n" for chunk in chunks) + b"data: [DONE]\n\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_an_answer_that_is_json_but_not_the_shape_asked_is_malformed_not_a_crash():
    for chunk in (b"[1]", b'"x"', b'{"choices": ["x"]}', b'{"choices": [{"delta": 5}]}'):
        listener, thread = _raw_sse_server([chunk])
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"

        async def shoot(url: str = url) -> Any:
            client = LeanClient(url, "k")
            try:
                return await client.shot(BODY, True)
            finally:
                await client.aclose()

        started = time.monotonic()
        shot = asyncio.run(shoot())
        thread.join(timeout=10)
        listener.close()
        assert not shot.ok and shot.cause == "malformed_response", (chunk, shot)
        assert time.monotonic() - started < 10


def test_an_address_that_never_answers_costs_a_quarter_second_not_the_connect_timeout(emulator, monkeypatch):
    """Happy eyeballs: a host whose first address drops SYNs (here a listener with a full accept queue; in the wild,
    IPv6 routed nowhere) is reached on its next address 250 ms later, as asyncio's own connections do."""
    server = emulator()
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    for _ in range(3):  # fill its accept queue: the kernel now drops further SYNs, and a connect hangs
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(blackhole.getsockname())
        fillers.append(filler)
    real = socket.getaddrinfo
    good_port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])

    def two_addresses(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "dual.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", blackhole.getsockname()),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", good_port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    route = Route(name="dual", base_url=f"http://dual.test:{good_port}/v1", api_key=SecretStr(EMULATOR_KEY),
                  api_key_env="X", model="kimi-k2.7-code")

    async def call() -> Any:
        async with Transport(route, profile_for(route.model, None)) as transport:
            return await transport.chat(json.loads(BODY))

    try:
        outcome = asyncio.run(call())
    finally:
        for filler in fillers:
            filler.close()
        blackhole.close()
    assert outcome.ok, outcome.failure
    assert 240 <= outcome.last.connect_ms <= 1500, outcome.last.connect_ms
