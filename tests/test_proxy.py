"""The proxy's checks and modes, request by request, against the emulator over real loopback HTTP: each finding kind
triggered by the request that has it, with its JSON pointer; enforce answers Moonshot's own error without sending;
repair strips what the sanitiser strips and puts back the exact reasoning it relayed, never an invented one."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import k2probe
from k2probe.api import RunningEmulator

from .proxyhelp import Proxied, proxied

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = {"model": "kimi-k2.7-code", "max_tokens": 16000, "tools": [WEATHER],
       "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}


@pytest.fixture
def emu() -> Any:
    with k2probe.emulator() as running:
        yield running


def _post(proxy: Proxied, body: dict[str, Any], path: str = "/chat/completions") -> httpx2.Response:
    return httpx2.post(proxy.base_url + path, json=body, headers={"Authorization": "Bearer sk-client"}, timeout=60)


def _first_turn(proxy: Proxied) -> dict[str, Any]:
    """The model's tool-call turn, through the proxy (which remembers it)."""
    answer = _post(proxy, ASK)
    assert answer.status_code == 200, answer.text
    message: dict[str, Any] = answer.json()["choices"][0]["message"]
    assert message["tool_calls"] and message["reasoning_content"]
    return message


def _second(message: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The next request of the loop, its assistant turn changed by `changes` (None: the field dropped)."""
    turn = {**message, **{k: v for k, v in changes.items() if v is not None}}
    for key in [k for k, v in changes.items() if v is None]:
        turn.pop(key, None)
    body = copy.deepcopy(ASK)
    body["messages"] += [turn] + [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"}
                                  for c in message["tool_calls"]]
    return body


def _findings(proxy: Proxied, number: int) -> list[Any]:
    return next(h for h in proxy.settle(number) if h.number == number).findings


@pytest.mark.parametrize("sent,why", [(" ", "a placeholder"), ("SHORT", "truncated"), ("COPY", "a copy")])
def test_reasoning_sent_back_altered_is_flagged(emu: RunningEmulator, sent: str, why: str) -> None:
    with proxied(emu) as proxy:
        message = _first_turn(proxy)
        reasoning = message["reasoning_content"]
        text = {" ": " ", "SHORT": reasoning[:7], "COPY": "I will look it up."}[sent]
        body = _second(message, reasoning_content=text, content="I will look it up." if sent == "COPY" else "")
        assert _post(proxy, body).status_code == 200  # Moonshot checks presence, not content: it answers
        (finding,) = _findings(proxy, 2)
    assert finding.kind == "reasoning_altered" and finding.pointer == "/messages/1/reasoning_content"
    assert why in finding.message and not finding.would_400


def test_repair_puts_back_the_exact_reasoning_in_place_of_a_placeholder(emu: RunningEmulator) -> None:
    with proxied(emu, "repair") as proxy:
        message = _first_turn(proxy)
        assert _post(proxy, _second(message, reasoning_content=" ")).status_code == 200
        (finding,) = _findings(proxy, 2)
        sent = proxy.settle(2)[1].record.request["messages"][1]
    assert finding.kind == "reasoning_altered" and finding.repaired
    assert sent["reasoning_content"] == message["reasoning_content"]


def test_repair_never_invents_reasoning_it_did_not_relay(emu: RunningEmulator) -> None:
    with proxied(emu, "repair") as proxy:
        body = _second({"role": "assistant", "content": "", "tool_calls": [
            {"id": "made_up_0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]})
        answer = _post(proxy, body)
        (finding,) = _findings(proxy, 1)
    assert answer.status_code == 400 and "reasoning_content is missing" in answer.text  # left as it was, sent
    assert finding.kind == "reasoning_dropped" and not finding.repaired and "no record" in finding.evidence


def test_temperature_is_flagged_in_observe_and_stripped_in_repair(emu: RunningEmulator) -> None:
    body = {**ASK, "temperature": 0.2}
    with proxied(emu) as proxy:
        observed = _post(proxy, body)
        (flagged,) = _findings(proxy, 1)
    assert observed.status_code == 400 and observed.json()["error"]["message"] == flagged.message
    assert flagged.kind == "fixed_parameter" and flagged.pointer == "/temperature" and flagged.would_400
    with proxied(emu, "repair") as proxy:
        repaired = _post(proxy, body)
        (stripped,) = _findings(proxy, 1)
        sent = proxy.settle(1)[0].record.request
    assert repaired.status_code == 200 and "temperature" not in sent
    assert stripped.repaired and "dropped" in stripped.evidence


def test_forced_tool_choice_is_flagged_and_enforce_answers_moonshots_error_without_sending(
        emu: RunningEmulator) -> None:
    body = {**ASK, "tool_choice": "required"}
    with proxied(emu) as proxy:
        assert _post(proxy, body).status_code == 400
        (flagged,) = _findings(proxy, 1)
    assert flagged.kind == "tool_choice" and flagged.pointer == "/tool_choice" and flagged.would_400
    seen = emu.server.state.requests_seen
    with proxied(emu, "enforce") as proxy:
        answer = _post(proxy, body)
        handled = proxy.settle(1)[0]
    assert answer.status_code == 400
    assert answer.json() == {"error": {"message": "tool_choice 'required' is incompatible with thinking enabled",
                                       "type": "invalid_request_error"}}
    assert emu.server.state.requests_seen == seen and handled.refused  # it cost nothing upstream


def test_thinking_disabled_a_missing_budget_and_a_public_image_url_are_flagged(emu: RunningEmulator) -> None:
    body = {"model": "kimi-k2.7-code", "thinking": {"type": "disabled"}, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}
    with proxied(emu, "enforce") as proxy:
        answer = _post(proxy, body)
        findings = {f.kind: f for f in _findings(proxy, 1)}
    assert set(findings) == {"thinking_disabled", "no_max_tokens", "media_over_limits"}
    assert findings["thinking_disabled"].would_400 and not findings["no_max_tokens"].would_400
    assert findings["media_over_limits"].pointer == "/messages/0/content/1/image_url/url"
    assert answer.json()["error"]["message"] == "invalid thinking: only type=enabled is allowed for this model"


def test_an_image_or_video_over_the_resolution_limit_is_flagged_as_the_route_would_refuse_it(
        emu: RunningEmulator, tmp_path: Path) -> None:
    """Read from the data URL's header (no pixel decoded): a 5000×100 PNG and a 1920×1088 MP4 are over the limits
    the emulator enforces (4096×2160, 1920×1080, either orientation); a 2160×4096 portrait image is not."""
    import base64

    from .media_files import image, video

    def part(kind: str, path: Path, mime: str) -> dict[str, Any]:
        url = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
        return {"type": f"{kind}_url", f"{kind}_url": {"url": url}}

    wide = part("image", image(tmp_path / "wide.png", "PNG", (5000, 100)), "image/png")
    tall = part("image", image(tmp_path / "tall.png", "PNG", (2160, 4096)), "image/png")
    film = part("video", video(tmp_path / "big.mp4", (1920, 1088), frames=2), "video/mp4")
    body = {**ASK, "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, wide, tall,
                                                             film]}]}
    with proxied(emu) as proxy:
        answer = _post(proxy, body)
        findings = _findings(proxy, 1)
    assert answer.status_code == 400  # the route refuses it too
    assert [(f.kind, f.pointer) for f in findings] == [("media_over_limits", "/messages/0/content/1/image_url/url"),
                                                       ("media_over_limits", "/messages/0/content/3/video_url/url")]
    assert "5000x100 exceeds the limit 4096x2160" in findings[0].message and findings[0].would_400
    assert "1920x1088 exceeds the limit 1920x1080" in findings[1].message


def test_a_tool_call_flattened_into_text_or_never_answered_is_flagged(emu: RunningEmulator) -> None:
    with proxied(emu) as proxy:
        message = _first_turn(proxy)
        call = message["tool_calls"][0]
        flat = copy.deepcopy(ASK)
        flat["messages"] += [{"role": "assistant", "content": f"Called get_weather({call['function']['arguments']})"},
                             {"role": "user", "content": "The tool said: sunny"}]
        _post(proxy, flat)
        unanswered = copy.deepcopy(ASK)
        unanswered["messages"] += [message, {"role": "user", "content": "go on"}]
        _post(proxy, unanswered)
        flattened, open_call = _findings(proxy, 2), _findings(proxy, 3)
    assert [(f.kind, f.pointer) for f in flattened] == [("tool_call_flattened", "/messages/1/content")]
    assert [(f.kind, f.pointer) for f in open_call] == [("tool_call_unanswered", "/messages/1/tool_calls/0")]


def test_a_doubled_v1_is_flagged_and_repair_sends_it_where_it_belongs(emu: RunningEmulator) -> None:
    with proxied(emu) as proxy:
        observed = _post(proxy, ASK, "/v1/chat/completions")
        (flagged,) = _findings(proxy, 1)
    assert observed.status_code == 404 and flagged.kind == "doubled_v1" and flagged.would_400
    with proxied(emu, "repair") as proxy:
        assert _post(proxy, ASK, "/v1/chat/completions").status_code == 200
        assert _findings(proxy, 1)[0].repaired


def test_a_local_token_is_required_when_set_and_the_clients_key_never_goes_upstream(emu: RunningEmulator) -> None:
    with proxied(emu, token="local-token-123") as proxy:
        refused = _post(proxy, ASK)
        answered = httpx2.post(proxy.base_url + "/chat/completions", json=ASK, timeout=60,
                               headers={"Authorization": "Bearer local-token-123"})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "invalid_authentication_error"
    assert answered.status_code == 200  # the emulator only takes the route's key: the proxy sent its own


async def _conversation(client: openai.AsyncOpenAI, index: int) -> int:
    """A conformant tool loop (streamed or not), or a single plain request; returns the requests made."""
    stream = index % 2 == 0
    messages: list[Any] = [{"role": "user", "content": f"What is the weather in city {index}?"}]
    tools = [WEATHER] if index % 3 else None
    extra = {"tools": tools} if tools else {}
    made = 0
    for _ in range(2 if tools else 1):
        made += 1
        if stream:
            reasoning, calls, content = [], {}, []
            async for chunk in await client.chat.completions.create(
                    model="kimi-k2.7-code", messages=messages, max_tokens=16000, stream=True, **extra):
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                reasoning.append(getattr(delta, "reasoning_content", None) or "")
                content.append(delta.content or "")
                for part in delta.tool_calls or []:
                    entry = calls.setdefault(part.index, {"id": part.id, "type": "function",
                                                          "function": {"name": "", "arguments": ""}})
                    entry["function"]["name"] += (part.function.name or "") if part.function else ""
                    entry["function"]["arguments"] += (part.function.arguments or "") if part.function else ""
            turn: dict[str, Any] = {"role": "assistant", "content": "".join(content),
                                    "reasoning_content": "".join(reasoning)}
            if calls:
                turn["tool_calls"] = [calls[i] for i in sorted(calls)]
        else:
            answer = await client.chat.completions.create(model="kimi-k2.7-code", messages=messages,
                                                          max_tokens=16000, **extra)
            turn = answer.choices[0].message.model_dump(exclude_none=True)
        if not turn.get("tool_calls"):
            break
        messages += [turn] + [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"}
                              for c in turn["tool_calls"]]
    return made


def test_a_thousand_conformant_requests_give_no_finding(emu: RunningEmulator) -> None:
    """Over 1,000 conformant requests from 600 conversations: streamed and not, tool loops and plain turns, 20 at a
    time — not one finding, not one failure."""
    with proxied(emu) as proxy:
        async def main() -> int:
            client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0)
            gate = asyncio.Semaphore(20)

            async def one(i: int) -> int:
                async with gate:
                    return await _conversation(client, i)

            return sum(await asyncio.gather(*(one(i) for i in range(600))))

        made = asyncio.run(main())
        handled = proxy.settle(made, seconds=30)
    assert made >= 1000 and len(handled) == made
    assert all(h.record.status == 200 and h.record.error_type is None for h in handled)
    assert [h.findings for h in handled if h.findings] == []
    assert proxy.server.proxy.stats.streamed >= made // 3


def test_a_refusal_from_the_route_passes_through_with_its_retry_after() -> None:
    with k2probe.emulator(faults={"rate_limit": 1.0}) as limited, proxied(limited) as proxy:
        answer = _post(proxy, ASK)
        (handled,) = proxy.settle(1)
    assert answer.status_code == 429 and answer.headers.get("retry-after")
    assert answer.json()["error"]["type"] == handled.record.error_type == "rate_limit_reached_error"
    assert proxy.server.proxy.stats.errors == 1


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'{"messages": "hello"}',
    b'{"model": "kimi-k2.7-code", "messages": [{"role": "assistant", "content": "x", "tool_calls": 5}]}',
    b'{"model": "kimi-k2.7-code", "messages": [{"role": "assistant", "content": "", "tool_calls": ["a", 1]}]}',
    b'{"model": "kimi-k2.7-code", "messages": [{"role": "user", "content": [1, "x", {"type": "image_url"}]}]}',
    b'{"model": "kimi-k2.7-code", "tool_choice": {"type": "function"}, "temperature": "hot", "messages": [1]}',
])
def test_a_body_too_odd_to_check_is_passed_on_never_a_proxy_crash(emu: RunningEmulator, body: bytes) -> None:
    with proxied(emu) as proxy:
        answer = httpx2.post(proxy.base_url + "/chat/completions", content=body, timeout=60,
                             headers={"Content-Type": "application/json"})
        (handled,) = proxy.settle(1)
    assert answer.status_code in (400, 404) and answer.json()["error"]["message"]  # the route's own refusal
    assert handled.record.status == answer.status_code


def test_a_gzipped_route_is_relayed_decoded_and_its_usage_read() -> None:
    """A route that gzips its answers, streams included (a gateway may): the client gets them plain, the proxy still
    reads each turn's usage and reasoning."""
    import threading
    import time

    import uvicorn
    from pydantic import SecretStr
    from starlette.middleware.gzip import GZipMiddleware

    from k2probe.core.config import Route
    from k2probe.core.profiles import PROFILES
    from k2probe.emulator.app import create_app
    from k2probe.emulator.settings import EmulatorSettings
    from k2probe.proxy.app import Proxy
    from k2probe.proxy.server import ProxyServer

    from .conftest import free_port

    port = free_port()
    app = GZipMiddleware(create_app(EmulatorSettings()), minimum_size=1, exclude_content_types=())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    route = Route(name="gzip", base_url=f"http://127.0.0.1:{port}/v1", api_key=SecretStr("sk-k2probe-emulator"),
                  api_key_env=None, model="kimi-k2.7-code")
    handled: list[Any] = []
    try:
        with httpx2.stream("POST", f"{route.base_url}/chat/completions", timeout=30, json={**ASK, "stream": True},
                           headers={"Authorization": "Bearer sk-k2probe-emulator"}) as direct:
            assert direct.headers.get("content-encoding") == "gzip"  # the route does gzip its streams
        with ProxyServer(Proxy(route, PROFILES["kimi-k2.7-code"], on_handled=handled.append)) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0)
            plain = client.chat.completions.create(model="kimi-k2.7-code", max_tokens=100,
                                                   messages=[{"role": "user", "content": "hi"}])
            pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="kimi-k2.7-code", max_tokens=100, stream=True,
                messages=[{"role": "user", "content": "hello"}]) if c.choices]
            deadline = time.monotonic() + 10
            while len(handled) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert plain.choices[0].message.content and "".join(pieces)
    assert [h.findings for h in handled] == [[], []]
    assert all(h.record.completion_tokens > 0 and h.record.error_type is None for h in handled)
    assert handled[1].record.ttft_ms is not None and handled[1].record.usage_location


def test_the_route_is_reached_through_the_environments_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY names how this machine reaches the route: the proxy's upstream goes through it (the lean HTTP/1.1
    path cannot, httpx2 does), as the main client and the load test's do; the route's key goes with the request."""

    from pydantic import SecretStr

    from k2probe.core.config import Route
    from k2probe.core.profiles import PROFILES
    from k2probe.proxy.app import Proxy
    from k2probe.proxy.server import ProxyServer

    from .fakeserver import ForwardProxy

    server = ForwardProxy().start()
    seen = server.seen
    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "all_proxy", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    route = Route(name="far", base_url="http://kimi.example.invalid/v1", api_key=SecretStr("sk-route-key-0000"),
                  api_key_env=None, model="kimi-k2.7-code")
    handled: list[Any] = []
    try:
        with ProxyServer(Proxy(route, PROFILES["kimi-k2.7-code"], on_handled=handled.append)) as proxy, \
                httpx2.Client(trust_env=False, timeout=30) as client:  # the test's own request: straight to it
            answer = client.post(proxy.base_url + "/chat/completions", json=ASK,
                                 headers={"Authorization": "Bearer sk-client"})
    finally:
        server.stop()
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "via proxy"
    assert seen == [("http://kimi.example.invalid/v1/chat/completions", "Bearer sk-route-key-0000")]
    assert handled and handled[0].record.completion_tokens == 2
