"""The proxy's fast relay, over real loopback sockets: a request sent from the server's callback on a kept connection
to the route, a stream written to the client from the route's socket callback — over HTTPS as over HTTP — and every
way out of it: a client slow to read (the rest awaited), a client that leaves, a route that cuts or stalls its
stream. Each asserts what the client got and what was recorded, and which way the proxy went (`Stats.ways`)."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import uvicorn
from pydantic import SecretStr

import k2probe
from k2probe.core.config import Route
from k2probe.core.profiles import PROFILES
from k2probe.core.served import ThreadedServer
from k2probe.emulator.app import create_app
from k2probe.emulator.settings import EmulatorSettings
from k2probe.proxy.app import Handled, Proxy
from k2probe.proxy.server import ProxyServer

from .conftest import trusted_pem
from .test_proxy import ASK

KEY = "sk-k2probe-emulator"


def _route(base_url: str) -> Route:
    return Route(name="route", base_url=base_url, api_key=SecretStr(KEY), api_key_env=None, model="kimi-k2.7-code")


def _settle(handled: list[Handled], count: int, seconds: float = 10.0) -> list[Handled]:
    deadline = time.monotonic() + seconds
    while len(handled) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return sorted(handled, key=lambda h: h.number)


def _streamed(client: openai.OpenAI, body: dict[str, Any]) -> dict[str, Any]:
    """A streamed turn put together as a client does: its content, reasoning and tool calls."""
    turn: dict[str, Any] = {"content": "", "reasoning_content": "", "tool_calls": {}}
    for chunk in client.chat.completions.create(**{**body, "stream": True}):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        turn["content"] += delta.content or ""
        turn["reasoning_content"] += getattr(delta, "reasoning_content", None) or ""
        for call in delta.tool_calls or []:
            kept = turn["tool_calls"].setdefault(call.index, {"id": call.id, "name": "", "arguments": ""})
            kept["name"] += (call.function.name or "") if call.function else ""
            kept["arguments"] += (call.function.arguments or "") if call.function else ""
    return turn


@pytest.fixture
def tls_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Route]:
    """The emulator over HTTPS, its throwaway CA trusted through SSL_CERT_FILE (as a company's own CA would be)."""
    key_file = trusted_pem(tmp_path, monkeypatch)
    config = uvicorn.Config(create_app(EmulatorSettings()), host="127.0.0.1", port=0, log_level="error",
                            lifespan="off", ssl_keyfile=str(key_file), ssl_certfile=str(key_file))
    with ThreadedServer(config, "tls emulator") as server:
        yield _route(f"https://localhost:{server.port}/v1")


def test_over_https_requests_go_early_and_streams_are_relayed_from_the_sockets_callback(tls_route: Route) -> None:
    handled: list[Handled] = []
    proxy = Proxy(tls_route, PROFILES["kimi-k2.7-code"], on_handled=handled.append)
    direct = openai.OpenAI(base_url=tls_route.base_url, api_key=KEY, max_retries=0)
    expected = _streamed(direct, ASK)
    with ProxyServer(proxy) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-client", max_retries=0)
        turns = [_streamed(client, ASK) for _ in range(3)]
        plain = client.chat.completions.create(**ASK)
        # the next turn of the loop, its reasoning dropped: the proxy remembers what it relayed from the callback
        tool_turn = turns[-1]
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for c in tool_turn["tool_calls"].values()]
        body = copy.deepcopy(ASK)
        body["messages"] += [{"role": "assistant", "content": "", "tool_calls": calls}] + [
            {"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls]
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(**body)
        records = _settle(handled, 5)
    assert all(turn == expected for turn in turns), (turns, expected)  # byte for byte what the route sends
    assert expected["reasoning_content"] and expected["tool_calls"]
    assert plain.choices[0].message.tool_calls
    assert proxy.stats.ways["sent early"] >= 3  # every request after the first, on the kept TLS connection
    assert proxy.stats.ways["relayed in callback"] == 3
    for h in records[:3]:
        assert h.record.status == 200 and h.record.finish_reason == "tool_calls" and h.record.error_type is None
        assert h.record.prompt_tokens > 0 and h.record.completion_tokens > 0 and h.record.ttft_ms is not None
    assert [f.kind for f in records[4].findings] == ["reasoning_dropped"]


def test_a_client_slow_to_read_gets_the_whole_stream_the_rest_awaited() -> None:
    """Past `write_high` bytes waiting for the client, the relay hands the stream over to its task, which waits
    for the client (uvicorn's drain) — here from the first piece on, so the hand-over itself is what is tested."""
    with k2probe.emulator(itl_ms=1) as emu:
        handled: list[Handled] = []
        proxy = Proxy(emu.route(), PROFILES["kimi-k2.7-code"], on_handled=handled.append, write_high=-1)
        direct = openai.OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0)
        expected = _streamed(direct, ASK)
        with ProxyServer(proxy) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="sk-client", max_retries=0)
            turns = [_streamed(client, ASK) for _ in range(2)]
            records = _settle(handled, 2)
    assert turns == [expected, expected]
    assert proxy.stats.ways["slowed"] == 2 and not proxy.stats.ways["relayed in callback"]
    for h in records:
        assert h.record.finish_reason == "tool_calls" and h.record.error_type is None
        assert h.record.completion_tokens > 0


def test_a_client_that_leaves_mid_stream_is_recorded_and_the_proxy_serves_on() -> None:
    with k2probe.emulator(ttft_ms=10, itl_ms=100) as emu:
        handled: list[Handled] = []
        proxy = Proxy(emu.route(), PROFILES["kimi-k2.7-code"], on_handled=handled.append)
        with ProxyServer(proxy) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="sk-client", max_retries=0)
            client.chat.completions.create(**{**ASK, "max_tokens": 50})  # a kept connection, so the next goes early
            with httpx2.stream("POST", server.base_url + "/chat/completions", json={**ASK, "stream": True},
                               headers={"Authorization": "Bearer sk-client"}, timeout=30) as answer:
                lines = answer.iter_lines()
                first = next(line for line in lines if line.startswith("data:"))
            after = _streamed(client, ASK)
            records = _settle(handled, 3)
    assert '"role": "assistant"' in first or '"role":"assistant"' in first
    assert records[1].record.error_type == "client_gone", records[1].record
    assert "stopped reading" in (records[1].record.error_message or "")
    assert after["tool_calls"] and records[2].record.error_type is None
    assert proxy.stats.ways["sent early"] >= 1


def _message_body(conn: socket.socket) -> bytes:
    """The body of the HTTP message (request or answer, its length given by Content-Length) read from `conn`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)
    return body


class BrokenRoute:
    """A route that answers each request with a stream's head and one chunk, then closes, stalls, or sends a chunk
    size that is not hexadecimal in the same write (`how`)."""

    HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'

    def __init__(self, how: str) -> None:
        self.how = how
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.kept: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.kept.append(conn)
            _message_body(conn)
            garbled = b"zz\r\n" if self.how == "garbled" else b""
            conn.sendall(self.HEAD + b"%x\r\n%b\r\n" % (len(self.CHUNK), self.CHUNK) + garbled)
            if self.how != "stalled":
                time.sleep(0.05)
                conn.close()

    def close(self) -> None:
        self.listener.close()
        for conn in self.kept:
            conn.close()


@pytest.mark.parametrize("how,named", [("cut", "RemoteProtocolError|ConnectionResetError"),
                                       ("stalled", "ReadTimeout"), ("garbled", "ProtocolError")])
def test_a_stream_the_route_cuts_stalls_or_garbles_reaches_its_end_and_is_recorded_as_cut(
        how: str, named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What came before the break reaches the client whole (here one chunk, in the same read as the garbled size
    line that follows it), then a clean end; the record says the stream was cut, and how."""
    monkeypatch.setenv("K2PROBE_STALL_S", "0.5")
    route = BrokenRoute(how)
    handled: list[Handled] = []
    proxy = Proxy(_route(f"http://127.0.0.1:{route.port}/v1"), PROFILES["kimi-k2.7-code"],
                  on_handled=handled.append)
    try:
        with ProxyServer(proxy) as server:
            started = time.monotonic()
            answer = httpx2.post(server.base_url + "/chat/completions", json={**ASK, "stream": True},
                                 headers={"Authorization": "Bearer sk-client"}, timeout=30)
            took = time.monotonic() - started
            (record,) = [h.record for h in _settle(handled, 1)]
    finally:
        route.close()
    assert answer.status_code == 200 and answer.content == BrokenRoute.CHUNK  # what came, then a clean end
    assert record.error_type == "stream_cut", record
    assert (record.error_message or "").startswith("the route's stream broke after 1 chunks: "), record.error_message
    assert (record.error_message or "").rsplit(": ", 1)[1] in named.split("|"), record.error_message
    assert took < 20  # the stall limit held, not the client's own timeout
    assert proxy.stats.ways["relayed in callback"] == 1  # it broke in the callback relay, not elsewhere


def _exchange(port: int, parts: list[bytes], pause_s: float) -> bytes:
    """One HTTP/1.1 exchange over a raw socket, the request written in `parts` with a pause between; the answer's
    body (Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause_s)
            conn.sendall(part)
        return _message_body(conn)


@pytest.mark.parametrize("split", [False, True], ids=["body-at-once", "body-in-parts"])
def test_a_request_whose_body_comes_after_its_task_started_is_sent_once_and_whole(split: bool) -> None:
    """The request's task starts on its headers. A body that then comes at once is sent early, and the task takes
    that exchange rather than sending the request again (the route would bill it twice); a body whose first part
    the task already read is the task's to send — never a part of it sent early."""
    with k2probe.emulator() as emu:
        handled: list[Handled] = []
        proxy = Proxy(emu.route(), PROFILES["kimi-k2.7-code"], on_handled=handled.append)
        with ProxyServer(proxy) as server:
            openai.OpenAI(base_url=server.base_url, api_key="sk-client", max_retries=0).chat.completions.create(**ASK)
            body = json.dumps(ASK).encode()
            head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body))
            parts = [head, body[:10], body[10:]] if split else [head, body]
            answer = json.loads(_exchange(server.port, parts, 0.3))
            records = _settle(handled, 2)
        seen = emu.server.state.requests_seen
    assert answer.get("choices") and answer["choices"][0]["message"]["tool_calls"], answer
    assert records[1].record.status == 200
    assert seen == 2 and proxy.stats.ways["sent early"] == (0 if split else 1)
