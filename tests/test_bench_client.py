"""The load test's own HTTP/1.1 (load/h1.py) against what servers really send: chunked bodies with extensions and
trailers, bodies read to the close, answers a byte at a time, a kept connection the server dropped, bytes that are not
HTTP — each read right or named by the failure taxonomy, never a crash."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from k2probe.load.lean import LeanClient, Shot

ANSWER = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}}
EVENTS = [b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n',
          b'data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n',
          b"data: [DONE]\n\n"]

Reply = Callable[[socket.socket, int], bool]  # (connection, its request number from 1) → keep it open


class RawServer:
    """A loopback server that reads each request whole and answers with the bytes `reply` writes."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        served = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests += 1
                served += 1
                if not self.reply(conn, served):
                    return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw() -> Iterator[Callable[[Reply], RawServer]]:
    servers: list[RawServer] = []

    def start(reply: Reply) -> RawServer:
        servers.append(RawServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _shots(url: str, stream: bool, n: int = 3) -> list[Shot]:
    async def run() -> list[Shot]:
        client = LeanClient(url, "sk-test-0000")
        try:
            return [await client.shot(b'{"model": "m"}', stream) for _ in range(n)]
        finally:
            await client.aclose()

    return asyncio.run(run())


def _sized(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def test_chunked_streams_with_extensions_and_trailers_on_one_kept_connection(raw):
    def reply(conn: socket.socket, _n: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in EVENTS:
            conn.sendall(b"%x;note=1\r\n%s\r\n" % (len(event), event))
        conn.sendall(b"0\r\nX-Trailer: yes\r\n\r\n")
        return True

    server = raw(reply)
    shots = _shots(server.url, stream=True)
    assert [(s.ok, s.output_tokens, len(s.itl_us)) for s in shots] == [(True, 2, 1)] * 3
    assert server.connections == 1  # the connection was kept between requests


def test_bodies_to_the_close_a_byte_at_a_time_and_http_1_0(raw):
    body = json.dumps(ANSWER).encode()

    def reply(conn: socket.socket, _n: int) -> bool:
        whole = _sized(body).replace(b"HTTP/1.1", b"HTTP/1.0")
        for i in range(len(whole)):
            conn.sendall(whole[i:i + 1])
        return False

    server = raw(reply)
    shots = _shots(server.url, stream=False)
    assert [(s.ok, s.output_tokens) for s in shots] == [(True, 7)] * 3
    assert server.connections == 3  # HTTP/1.0 and closed: a new connection each time

    def to_close(conn: socket.socket, _n: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        for event in EVENTS:
            conn.sendall(event)
        return False

    assert [(s.ok, s.output_tokens) for s in _shots(raw(to_close).url, stream=True)] == [(True, 2)] * 3


def test_a_kept_connection_the_server_dropped_is_replaced_not_counted_as_a_failure(raw):
    body = json.dumps(ANSWER).encode()

    def reply(conn: socket.socket, n: int) -> bool:
        if n == 2:  # the next request on a kept connection: closed without a word, as a server's idle timeout does
            return False
        conn.sendall(_sized(body))
        return True

    server = raw(reply)
    shots = _shots(server.url, stream=False, n=4)
    assert all(s.ok for s in shots), [s.cause for s in shots]
    assert server.connections == 4 and server.requests == 1 + 2 * 3  # each dropped request sent again, once


@pytest.mark.parametrize(("answer", "cause"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "unreachable"),  # not HTTP
    (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "unreachable"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "unreachable"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"choices\": ", "unreachable"),  # cut short
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!", "malformed_response"),
    (b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 86\r\n\r\n"
     b'{"error": {"message": "Invalid Authentication", "type": "invalid_authentication_error"}}', "invalid_key"),
])
def test_what_is_not_an_answer_is_named_by_the_failure_taxonomy(raw, answer: bytes, cause: str):
    def reply(conn: socket.socket, _n: int) -> bool:
        conn.sendall(answer)
        return False

    [shot] = _shots(raw(reply).url, stream=False, n=1)
    assert not shot.ok and shot.cause == cause, (shot.cause, answer)


def test_an_answer_that_never_comes_is_a_timeout_and_its_connection_is_closed(raw):
    closed = threading.Event()

    def reply(conn: socket.socket, _n: int) -> bool:
        if conn.recv(1) == b"":  # nothing is sent: the server waits until the client gives up and closes
            closed.set()
        return False

    server = raw(reply)

    async def run() -> tuple[Shot, bool]:
        client = LeanClient(server.url, "sk-test-0000", timeout_s=0.5)
        try:
            shot = await client.shot(b'{"model": "m"}', False)
            return shot, await asyncio.to_thread(closed.wait, 10)  # while the client still lives
        finally:
            await client.aclose()

    shot, seen = asyncio.run(run())
    assert not shot.ok and shot.cause == "timeout"
    assert seen  # the client closed the connection it gave up on, not left it open behind the timeout
