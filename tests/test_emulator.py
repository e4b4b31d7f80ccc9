"""The emulator enforces the Kimi contract with Moonshot's exact bodies and streams in Moonshot's shape."""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest

from .conftest import EMULATOR_KEY

AUTH = {"Authorization": f"Bearer {EMULATOR_KEY}"}
USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def _post(server, body, path="/chat/completions", headers=AUTH):
    return httpx.post(server.base_url + path, json=body, headers=headers, timeout=30)


def _error(server, **fields):
    response = _post(server, {"model": "kimi-k2.7-code", "messages": [USER], **fields})
    return response.status_code, response.json()["error"]


@pytest.fixture
def server(emulator):
    return emulator()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("temperature", 0.2, "invalid temperature: only 1 is allowed for this model"),
    ("top_p", 0.5, "invalid top_p: only 0.95 is allowed for this model"),
    ("n", 2, "invalid n: only 1 is allowed for this model"),
    ("presence_penalty", 0.1, "invalid presence_penalty: only 0 is allowed for this model"),
    ("frequency_penalty", 1, "invalid frequency_penalty: only 0 is allowed for this model"),
])
def test_fixed_parameters(server, field, value, message):
    assert _error(server, **{field: value}) == (400, {"message": message, "type": "invalid_request_error"})


@pytest.mark.parametrize(("field", "value"), [("temperature", 1.0), ("top_p", 0.95), ("n", 1),
                                              ("presence_penalty", 0), ("frequency_penalty", 0.0)])
def test_fixed_values_are_accepted(server, field, value):
    assert _post(server, {"model": "kimi-k2.7-code", "messages": [USER], field: value}).status_code == 200


def test_thinking_rules(server):
    assert _error(server, thinking={"type": "disabled"})[1]["message"] == \
        "invalid thinking: only type=enabled is allowed for this model"
    assert "expected an object" in _error(server, thinking=False)[1]["message"]
    assert _post(server, {"model": "kimi-k2.7-code", "messages": [USER],
                          "thinking": {"type": "enabled", "keep": "all"}}).status_code == 200


def test_tool_choice_rules(server):
    assert _error(server, tools=[TOOL], tool_choice="required")[1]["message"] == \
        "tool_choice 'required' is incompatible with thinking enabled"
    named = {"type": "function", "function": {"name": "lookup"}}
    assert _error(server, tools=[TOOL], tool_choice=named)[1]["message"] == \
        "tool_choice 'specified' is incompatible with thinking enabled"
    bad = {"type": "function", "function": {"name": "9x", "parameters": {}}}
    assert _error(server, tools=[bad])[0] == 400
    assert "duplicated" in _error(server, tools=[TOOL, TOOL])[1]["message"]


def test_missing_reasoning_content_names_the_index(server):
    call = {"id": "lookup_0", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    history = [{"role": "system", "content": "s"}, USER, {"role": "assistant", "content": "", "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "lookup_0", "content": "found"}]
    status, error = _error(server, messages=history, tools=[TOOL])
    assert status == 400 and error == {
        "message": "thinking is enabled but reasoning_content is missing in assistant tool call message at index 2",
        "type": "invalid_request_error"}
    history[2]["reasoning_content"] = ""  # presence, not content, is checked
    assert _post(server, {"model": "kimi-k2.7-code", "messages": history, "tools": [TOOL]}).status_code == 200


def test_empty_content_and_context_overflow(server):
    assert _error(server, messages=[{"role": "user", "content": ""}])[0] == 400
    huge = {"role": "user", "content": "x" * (262144 * 4 + 100)}
    assert _error(server, messages=[huge]) == (400, {"message": "Your request exceeded model token limit : 262144",
                                                     "type": "invalid_request_error"})


def test_content_filter(server):
    assert _error(server, messages=[{"role": "user", "content": "K2PROBE_HIGH_RISK"}]) == (
        400, {"message": "The request was rejected because it was considered high risk", "type": "content_filter"})


def test_auth_model_and_paths(server):
    wrong = _post(server, {"model": "kimi-k2.7-code", "messages": [USER]}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"message": "Invalid Authentication", "type": "invalid_authentication_error"}}
    missing = _post(server, {"model": "kimi-k2.7-cod", "messages": [USER]})
    assert missing.status_code == 404 and missing.json()["error"] == {
        "message": "Not found the model kimi-k2.7-cod or Permission denied", "type": "resource_not_found_error"}
    doubled = httpx.post(server.base_url + "/v1/chat/completions", json={}, headers=AUTH)
    assert doubled.status_code == 404 and "error" not in doubled.text


def test_models_balance_tokenizer(server):
    models = httpx.get(server.base_url + "/models", headers=AUTH).json()["data"]
    entry = next(m for m in models if m["id"] == "kimi-k2.7-code")
    assert entry["object"] == "model" and entry["owned_by"] == "moonshot" and entry["context_length"] == 262144
    assert {"supports_image_in", "supports_video_in", "supports_reasoning"} <= set(entry)
    balance = httpx.get(server.base_url + "/users/me/balance", headers=AUTH).json()
    assert balance["code"] == 0 and balance["status"] is True and "available_balance" in balance["data"]
    count = _post(server, {"model": "kimi-k2.7-code", "messages": [USER]}, "/tokenizers/estimate-token-count").json()
    assert count["data"]["total_tokens"] > 0


def test_files_api(server):
    client = openai.OpenAI(api_key=EMULATOR_KEY, base_url=server.base_url)
    created = client.files.create(file=("notes.txt", b"hello"), purpose="file-extract")
    assert created.bytes == 5 and created.id.startswith("file-")
    assert [f.id for f in client.files.list().data] == [created.id]
    assert client.files.retrieve(created.id).filename == "notes.txt"
    client.files.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_stream_shape_matches_moonshot(server):
    body = {"model": "kimi-k2.7-code", "messages": [USER], "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, headers=AUTH) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    reasoning = [d["reasoning_content"] for d in deltas if "reasoning_content" in d]
    assert reasoning[0] == "" and reasoning[-1] == "" and len(reasoning) > 2
    last_reasoning = max(i for i, d in enumerate(deltas) if "reasoning_content" in d)
    first_content = min(i for i, d in enumerate(deltas) if d.get("content"))
    assert last_reasoning < first_content
    final = chunks[-1]["choices"][0]
    assert final["delta"] == {} and final["finish_reason"] == "stop"
    usage = final["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == len([r for r in reasoning if r])
    assert chunks[0]["id"].startswith("chatcmpl-") and len(chunks[0]["id"]) == len("chatcmpl-") + 24


def test_cache_hits_are_reported(server):
    body = {"model": "kimi-k2.7-code", "messages": [{"role": "system", "content": "You review code." * 20}, USER]}
    first = _post(server, body).json()["usage"]
    second = _post(server, body).json()["usage"]
    assert "cached_tokens" not in first and second["cached_tokens"] > 0
    assert second["prompt_tokens_details"]["cached_tokens"] == second["cached_tokens"] <= second["prompt_tokens"]


def test_budget_ends_with_length(server):
    data = _post(server, {"model": "kimi-k2.7-code", "messages": [USER], "max_tokens": 3}).json()
    assert data["choices"][0]["finish_reason"] == "length" and data["usage"]["completion_tokens"] == 3


def test_rpm_and_concurrency_limits(emulator):
    limited = emulator(rpm=2)
    codes = [_post(limited, {"model": "kimi-k2.7-code", "messages": [USER]}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    error = _post(limited, {"model": "kimi-k2.7-code", "messages": [USER]})
    assert "request reached organization max RPM: 2" in error.json()["error"]["message"]
    assert error.headers["retry-after"]
    slow = emulator(max_concurrency=1, ttft_ms=300)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        _post(slow, {"model": "kimi-k2.7-code", "messages": [USER]}).status_code)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 429]


def test_deterministic_for_a_seed(emulator):
    a, b = emulator(seed=7), emulator(seed=7)
    body = {"model": "kimi-k2.7-code", "messages": [USER]}
    first, second = _post(a, body).json(), _post(b, body).json()
    assert first["choices"] == second["choices"] and first["usage"] == second["usage"]


def test_openrouter_errors_are_wrapped(emulator):
    server = emulator(personality="openrouter")
    response = _post(server, {"model": "moonshotai/kimi-k2.7-code", "messages": [USER], "temperature": 0.1})
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == 400
    assert json.loads(error["metadata"]["raw"])["error"]["type"] == "invalid_request_error"
