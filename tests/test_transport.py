"""The request path against the emulator: timings by the contract's §11, stream assembly, retries, failures."""

from __future__ import annotations

import asyncio
import statistics

from pydantic import SecretStr

from k2probe.client.transport import RetryPolicy, Transport
from k2probe.core.config import Route
from k2probe.core.profiles import profile_for
from k2probe.core.records import CallRecord

from .conftest import EMULATOR_KEY

HI = [{"role": "user", "content": "Say hello"}]


def _transport(server, model="kimi-k2.7-code", policy=None, sink=None):
    route = Route(name="test", base_url=server.base_url, api_key=SecretStr(EMULATOR_KEY), api_key_env=None,
                  model=model)
    return Transport(route, profile_for(model), policy=policy, on_call=sink.append if sink is not None else None)


def _chat(server, body, **kwargs):
    async def go():
        transport = _transport(server, **kwargs)
        try:
            return await transport.chat({"model": kwargs.get("model", "kimi-k2.7-code"), "messages": HI,
                                         "max_tokens": 512, **body})
        finally:
            await transport.aclose()

    return asyncio.run(go())


def test_ttft_matches_the_injected_delay(emulator):
    server = emulator(ttft_ms=200, itl_ms=5)

    async def go():
        transport = _transport(server)
        try:
            await transport.chat({"model": "kimi-k2.7-code", "messages": HI, "stream": True})  # warm the connection
            return [await transport.chat({"model": "kimi-k2.7-code", "messages": HI, "stream": True})
                    for _ in range(9)]
        finally:
            await transport.aclose()

    outcomes = asyncio.run(go())
    samples = [o.last.ttft_ms for o in outcomes]
    assert 200 <= statistics.median(samples) <= 205, samples
    call = outcomes[-1].last
    assert call.ttfc_ms > call.ttft_ms  # reasoning comes first; content later
    gaps = call.itl_ms
    assert len(gaps) == call.completion_tokens - 1  # one token per chunk in the emulator; TTFT excluded
    assert 4 <= statistics.median(gaps) <= 9, gaps
    assert call.latency_ms >= call.ttft_ms + sum(gaps) - 1


def test_stream_assembles_reasoning_content_and_usage(emulator):
    outcome = _chat(emulator(), {"stream": True})
    assert outcome.ok
    assert outcome.reasoning and outcome.content.startswith("Emulated answer")
    call = outcome.last
    assert call.usage_location == "choices[0].usage"
    assert call.reasoning_field == "reasoning_content"
    assert call.completion_tokens > call.reasoning_tokens > 0
    assert call.cost_usd is not None and call.cost_usd > 0 and "kimi" in call.price_source.lower()


def test_usage_from_the_extra_include_usage_chunk(emulator):
    outcome = _chat(emulator(), {"stream": True, "stream_options": {"include_usage": True}})
    assert outcome.last.usage_location == "top-level chunk"
    assert outcome.usage.total_tokens == outcome.usage.prompt_tokens + outcome.usage.completion_tokens


def test_tool_call_deltas_without_index_are_assembled(emulator):
    tool = {"type": "function", "function": {"name": "read_file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}, "start_line": {"type": "integer"}},
        "required": ["path", "start_line"]}}}
    outcome = _chat(emulator(), {"stream": True, "tools": [tool], "tool_choice": "auto"})
    calls = outcome.message["tool_calls"]
    assert outcome.finish_reason == "tool_calls"
    assert calls == [{"id": "read_file_0", "type": "function",
                      "function": {"name": "read_file", "arguments": '{"path": "k2probe", "start_line": 1}'}}]
    assert outcome.message["content"] == "" and outcome.message["reasoning_content"]


def test_openrouter_stream_shape(emulator):
    outcome = _chat(emulator(personality="openrouter"), {"stream": True}, model="moonshotai/kimi-k2.7-code")
    assert outcome.ok
    assert outcome.last.reasoning_field == "reasoning"  # keep-alive comments and "data:" without space parsed
    assert outcome.usage.gateway_cost is not None


def test_openrouter_error_after_stream_start(emulator):
    outcome = _chat(emulator(personality="openrouter", faults={"server_error": 1.0}), {"stream": True},
                    model="moonshotai/kimi-k2.7-code", policy=RetryPolicy(max_retries=3))
    assert outcome.failure is not None and outcome.failure.mid_stream
    assert outcome.failure.status == 200 and outcome.failure.type == "server_error"  # from metadata.raw
    assert len(outcome.calls) == 1  # a failure after the stream started is not retried


def test_cut_stream_is_named(emulator):
    outcome = _chat(emulator(faults={"cut": 1.0}), {"stream": True})
    assert outcome.failure.type == "stream_cut"
    assert outcome.content == ""  # cut before the answer; the partial reasoning is kept
    assert outcome.reasoning


def test_malformed_chunk_is_named(emulator):
    outcome = _chat(emulator(faults={"malformed": 1.0}), {"stream": True})
    assert outcome.failure.type == "malformed_response"


def test_rate_limits_are_retried_with_retry_after_and_recorded(emulator):
    sink: list[CallRecord] = []
    outcome = _chat(emulator(faults={"rate_limit": 1.0}, retry_after_s=0.02), {},
                    policy=RetryPolicy(max_retries=2), sink=sink)
    assert [c.attempt for c in sink] == [0, 1, 2]
    assert all(c.status == 429 and c.error_type == "rate_limit_reached_error" for c in sink)
    assert sink[0].retry_reason.startswith("rate_limit_reached_error (HTTP 429); waited 0.02s")
    assert sink[-1].retry_reason is None
    assert outcome.failure.type == "rate_limit_reached_error"


def test_quota_429_is_not_retried(emulator):
    sink: list[CallRecord] = []
    outcome = _chat(emulator(faults={"quota": 1.0}), {}, policy=RetryPolicy(max_retries=5), sink=sink)
    assert len(sink) == 1
    assert outcome.failure.type == "exceeded_current_quota_error" and not outcome.failure.retryable


def test_contract_errors_are_not_retried(emulator):
    sink: list[CallRecord] = []
    outcome = _chat(emulator(), {"temperature": 0.3}, policy=RetryPolicy(max_retries=5), sink=sink)
    assert len(sink) == 1 and outcome.failure.status == 400


def test_transient_500_recovers(emulator):
    server = emulator(faults={"server_error": 0.5}, seed=3, retry_after_s=0.01)
    sink: list[CallRecord] = []
    outcome = _chat(server, {}, policy=RetryPolicy(max_retries=6, base_delay_s=0.01), sink=sink)
    assert outcome.ok
    assert len(sink) >= 2 and sink[0].status == 500  # seed 3 fails the first try
    assert all(c.retry_reason for c in sink[:-1])


def test_html_answer_is_a_clear_failure(emulator):
    server = emulator()
    outcome = _chat(server, {}, policy=RetryPolicy(max_retries=0))
    assert outcome.ok
    # a base URL that reaches a web page, not an API: the emulator's 404 page
    route = Route(name="t", base_url=server.base_url + "/v1", api_key=SecretStr(EMULATOR_KEY), api_key_env=None,
                  model="kimi-k2.7-code")

    async def go():
        transport = Transport(route, profile_for(route.model), policy=RetryPolicy(max_retries=0))
        try:
            return await transport.chat({"model": "kimi-k2.7-code", "messages": HI, "max_tokens": 10})
        finally:
            await transport.aclose()

    failed = asyncio.run(go())
    assert failed.failure.type == "non_json_response" and failed.failure.status == 404
    assert "404 page not found" in failed.failure.message


def test_client_queue_time_is_recorded_apart(emulator):
    server = emulator(ttft_ms=150)

    async def go():
        route = Route(name="q", base_url=server.base_url, api_key=SecretStr(EMULATOR_KEY), api_key_env=None,
                      model="kimi-k2.7-code")
        transport = Transport(route, profile_for(route.model), concurrency=1)
        try:
            body = {"model": "kimi-k2.7-code", "messages": HI, "max_tokens": 64}
            return await asyncio.gather(transport.chat(body), transport.chat(body))
        finally:
            await transport.aclose()

    first, second = sorted(asyncio.run(go()), key=lambda o: o.last.queue_ms)
    assert first.last.queue_ms < 100 and second.last.queue_ms >= 140  # waited for the first one's slot
    assert second.last.latency_ms < second.last.queue_ms + 100  # server latency does not include the wait


def test_proxy_variables_are_honoured_like_the_raw_probes(cli, workdir):
    """HTTP_PROXY reaches the SDK's client too (a custom transport would silently ignore it); NO_PROXY exempts."""
    from .fakeserver import ForwardProxy

    server = ForwardProxy().start()
    env = {"AI_GATEWAY_API_KEY": "sk-proxy-test-00000000000", "AI_GATEWAY_BASE_URL": "http://kimi.example.invalid/v1",
           "HTTP_PROXY": f"http://127.0.0.1:{server.port}"}
    try:
        through = cli("chat", "hi", "--json", "--timeout", "20", env=env)
        exempt = cli("chat", "hi", "--json", "--timeout", "20", env={**env, "NO_PROXY": "kimi.example.invalid"})
    finally:
        server.stop()
    seen = [path for path, _ in server.seen]
    assert through.code == 0 and through.json()["answer"] == "via proxy", through.stderr
    assert seen == ["http://kimi.example.invalid/v1/chat/completions"]
    assert exempt.code != 0 and len(seen) == 1  # not sent to the proxy: straight to a host that does not exist


def test_pool_limits_are_the_sdks_and_timings_are_apart(emulator):
    import asyncio

    from k2probe.client.transport import POOL_LIMITS, Transport
    from k2probe.core.config import Route
    from k2probe.core.profiles import profile_for

    assert POOL_LIMITS.max_connections >= 1000 and POOL_LIMITS.max_keepalive_connections >= 100
    server = emulator(ttft_ms=50)
    route = Route(name="t", base_url=server.base_url, api_key="sk-k2probe-emulator", api_key_env="X",
                  model="kimi-k2.7-code")

    async def two() -> list:
        async with Transport(route, profile_for(route.model, None)) as transport:
            body = {"model": route.model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
            first = await transport.chat(body)
            second = await transport.chat(body)
        return [first.last, second.last]

    fresh, reused = asyncio.run(two())
    assert fresh.connect_ms > 0 and reused.connect_ms == 0  # a new connection, then the pooled one
    for call in (fresh, reused):
        assert call.ttft_ms is not None and call.ttft_ms >= 45  # from headers on the wire, not before the connect
