"""A gateway that answers 200 with something unusable — usage huge, negative, NaN or strings, 100,000-deep JSON, lone
surrogates, `content: 123`, `tool_calls: "notalist"`, streamed or not — gets `malformed_response`, an error of the
route carrying its words: never an internal error, a negative or infinite cost, or a dead recorder."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from pydantic import SecretStr

from k2probe.client.transport import RetryPolicy, Transport
from k2probe.core.config import Route
from k2probe.core.profiles import profile_for
from k2probe.core.records import CallRecord

from .garbled import Garbled, chunk, completion

DEEP = 100_000
GOOD = {"role": "assistant", "content": "hello"}
PLAIN: dict[str, bytes] = {
    "usage-huge": completion(usage={"prompt_tokens": 10**300, "completion_tokens": 5}),
    "usage-huge-float": completion(usage={"prompt_tokens": 1e300, "completion_tokens": 5}),
    "usage-negative": completion(usage={"prompt_tokens": -1_000_000, "completion_tokens": 5}),
    "usage-nan": completion(usage={"prompt_tokens": float("nan"), "completion_tokens": 5}),
    "usage-infinity": completion(usage={"prompt_tokens": 5, "completion_tokens": float("inf")}),
    "usage-string": completion(usage={"prompt_tokens": "12", "completion_tokens": "many"}),
    "usage-details-string": completion(usage={"prompt_tokens": 5, "prompt_tokens_details": "cached"}),
    "usage-cost-negative": completion(usage={"prompt_tokens": 5, "completion_tokens": 5, "cost": -3.0}),
    "deep-json": b'{"choices":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deep-object": b'{"id":"x","choices":[{"message":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}]}",
    "lone-surrogate": b'{"choices":[{"message":{"role":"assistant","content":"ok \\ud800 ok"},"finish_reason":"stop"}]}',
    "surrogate-key": b'{"choices":[{"message":{"role":"assistant","content":"ok","\\udfff":1},"finish_reason":"stop"}]}',
    "content-123": completion({"role": "assistant", "content": 123}),
    "tool-calls-notalist": completion({"role": "assistant", "content": "", "tool_calls": "notalist"}),
    "tool-call-function-string": completion({"role": "assistant", "content": "", "tool_calls": [{"function": "x"}]}),
    "choices-string": json.dumps({"choices": "none"}).encode(),
    "choices-empty": json.dumps({"choices": []}).encode(),
    "message-list": completion([1, 2]),
    "huge-integer": b'{"choices":[{"message":{"content":"x"}}],"n":' + b"9" * 5000 + b"}",
    "json-array": b"[1, 2, 3]",
}
STREAM: dict[str, list[bytes]] = {
    "usage-huge": [chunk({"content": "x"}), chunk(finish="stop", usage={"prompt_tokens": 10**300})],
    "usage-negative": [chunk({"content": "x"}), chunk(finish="stop", usage={"completion_tokens": -7})],
    "usage-nan": [chunk({"content": "x"}), chunk(finish="stop", usage={"prompt_tokens": float("nan")})],
    "usage-string": [chunk({"content": "x"}), chunk(finish="stop", usage={"prompt_tokens": "12"})],
    "deep-json": [b"data: " + b"[" * DEEP + b"]" * DEEP + b"\n\n"],
    "lone-surrogate": [b'data: {"choices":[{"delta":{"content":"a\\ud800"}}]}\n\n', chunk(finish="stop")],
    "content-123": [chunk({"content": 123}), chunk(finish="stop")],
    "tool-calls-notalist": [chunk({"tool_calls": "notalist"}), chunk(finish="tool_calls")],
    "tool-call-index-huge": [chunk({"tool_calls": [{"index": 10**12, "function": {"name": "f"}}]}),
                             chunk(finish="tool_calls")],
    "choices-string": [b'data: {"choices": "x"}\n\n'],
    "delta-list": [b'data: {"choices": [{"delta": [1]}]}\n\n'],
    "chunk-number": [b"data: 5\n\n"],
}


def _route(server: Garbled) -> Route:
    return Route(name="garbled", base_url=server.base_url, api_key=SecretStr("sk-garbled-test"), api_key_env=None,
                 model="kimi-k2.7-code")


def _chat(server: Garbled, stream: bool) -> tuple[object, list[CallRecord]]:
    sink: list[CallRecord] = []

    async def go():  # type: ignore[no-untyped-def]
        transport = Transport(_route(server), profile_for("kimi-k2.7-code"), policy=RetryPolicy(max_retries=2),
                              on_call=sink.append)
        try:
            return await transport.chat({"model": "kimi-k2.7-code", "messages": [{"role": "user", "content": "hi"}],
                                         "max_tokens": 16, "stream": stream})
        finally:
            await transport.aclose()

    return asyncio.run(go()), sink


def _never_negative(calls: list[CallRecord]) -> None:
    for call in calls:
        assert call.cost_usd is None or (math.isfinite(call.cost_usd) and call.cost_usd >= 0), call.cost_usd
        assert min(call.prompt_tokens, call.completion_tokens, call.reasoning_tokens, call.cached_tokens) >= 0
        json.dumps(call.as_dict(), allow_nan=False).encode("utf-8")  # what the store takes: valid UTF-8, no NaN


@pytest.mark.parametrize("name", list(PLAIN))
def test_a_malformed_answer_is_malformed_response(name):
    with Garbled(PLAIN[name]) as server:
        outcome, calls = _chat(server, stream=False)
    failure = outcome.failure  # type: ignore[attr-defined]
    assert failure is not None and failure.type == "malformed_response", failure
    assert failure.cause == "malformed_response" and failure.status == 200
    assert len(failure.message) <= 500
    assert len(calls) == 1  # not retried: the same server would answer the same
    assert calls[0].cost_usd is None and calls[0].price_source.startswith("cost unknown")  # unknown, never $0
    _never_negative(calls)


@pytest.mark.parametrize("name", list(STREAM))
def test_a_malformed_chunk_is_malformed_response(name):
    with Garbled(chunks=STREAM[name]) as server:
        outcome, calls = _chat(server, stream=True)
    failure = outcome.failure  # type: ignore[attr-defined]
    assert failure is not None and failure.type == "malformed_response", failure
    assert failure.cause == "malformed_response" and failure.mid_stream
    assert len(calls) == 1
    assert calls[0].cost_usd is None
    _never_negative(calls)


def test_the_servers_words_are_kept_and_safe():
    """The failure says where and what: the field and the value the server sent, as valid UTF-8."""
    with Garbled(PLAIN["content-123"]) as server:
        outcome, _ = _chat(server, stream=False)
    assert "choices.0.message.content" in outcome.failure.message and "123" in outcome.failure.message
    with Garbled(PLAIN["lone-surrogate"]) as server:
        outcome, _ = _chat(server, stream=False)
    assert "surrogate" in outcome.failure.message
    outcome.failure.message.encode("utf-8")


def test_a_well_formed_answer_is_still_read_and_priced():
    """The checks refuse only what cannot be used: a good answer (12.0 tokens written as a float) is priced."""
    with Garbled(completion(GOOD, usage={"prompt_tokens": 12.0, "completion_tokens": 3,
                                         "prompt_tokens_details": {"cached_tokens": 2}})) as server:
        outcome, calls = _chat(server, stream=False)
    assert outcome.ok and outcome.content == "hello"  # type: ignore[attr-defined]
    assert calls[0].prompt_tokens == 12 and calls[0].cached_tokens == 2
    assert calls[0].cost_usd is not None and calls[0].cost_usd > 0
    with Garbled(chunks=[chunk({"content": "hel"}), chunk({"content": "lo"}),
                         chunk(finish="stop", usage={"prompt_tokens": 4, "completion_tokens": 2})]) as server:
        outcome, calls = _chat(server, stream=True)
    assert outcome.ok and outcome.content == "hello"  # type: ignore[attr-defined]
    assert calls[0].cost_usd is not None and calls[0].cost_usd > 0


def _clean(stderr: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", ["usage-negative", "deep-json", "lone-surrogate", "content-123",
                                  "tool-calls-notalist"])
def test_chat_says_malformed_response_in_one_line(cli, name, stream):
    body, chunks = PLAIN[name], STREAM[name]
    with Garbled(body, chunks) as server:
        done = cli("chat", *(["--stream"] if stream else []), "hi", env=server.env())
        _clean(done.stderr)
        assert done.code == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("k2probe: chat failed: HTTP 200 malformed_response"), done.stderr
        shown = cli("runs", "--json")
    run = shown.json()["runs"][0]
    assert run["status"] == "finished"  # the store took the call: the recorder is alive
    calls = cli("show", run["id"][:8], "--json").json()["calls"]
    assert [c["error_type"] for c in calls] == ["malformed_response"]
    assert calls[0]["cost_usd"] is None


def test_eval_over_every_malformed_answer_ends_each_sample_as_error(cli):
    """One eval whose route answers each request with another malformed shape: every sample `error` with
    malformed_response (none left pending: the recorder lived), no cost below zero, exit 1 under the threshold."""
    bodies = list(PLAIN.values())
    with Garbled(bodies) as server:
        done = cli("eval", "humaneval", "--limit", str(len(bodies)), "--concurrency", "4", "--json",
                   "--fail-under", "error_rate=0", env=server.env())
    _clean(done.stderr)
    assert done.code == 1, done.stderr
    assert "20 of 20 sample(s) ended as error, over --max-error-rate 0" in done.stderr
    samples = done.json()["samples"]
    assert len(samples) == len(bodies)
    assert {s["outcome"] for s in samples} == {"error"}
    assert all("malformed_response" in s["reason"] for s in samples), [s["reason"] for s in samples]
    assert all(s["cost_usd"] is None for s in samples)  # unknown, not $0 and not negative
    run = cli("runs", "--json").json()["runs"][0]
    assert run["status"] == "finished"
