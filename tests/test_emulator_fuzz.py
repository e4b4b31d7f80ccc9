"""The emulator fuzzed with 1200 bodies over real loopback HTTP: every malformed body is a JSON 400 in Moonshot's shape,
never a 5xx, and every 200 stream is whole (JSON chunks, a finish_reason, [DONE])."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import httpx

from .conftest import EMULATOR_KEY

VALID: dict[str, Any] = {
    "model": "kimi-k2.7-code",
    "messages": [{"role": "system", "content": "You review code."},
                 {"role": "user", "content": [{"type": "text", "text": "Review this diff."}]},
                 {"role": "assistant", "content": "", "reasoning_content": "I look.",
                  "tool_calls": [{"id": "c1", "type": "function",
                                  "function": {"name": "read_file", "arguments": "{\"path\": \"a.py\"}"}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "print(1)"}],
    "max_tokens": 256,
    "tools": [{"type": "function", "function": {"name": "read_file", "description": "read",
                                                "parameters": {"type": "object", "properties": {}}}}],
    "tool_choice": "auto",
    "stream": False,
}


def _odd(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "neg", "float", "huge", "str", "empty", "none", "bool", "list", "dict", "deep", "url"]
    kind = rng.choice(kinds if depth < 2 else kinds[:8])
    return {"int": lambda: rng.randint(0, 10), "neg": lambda: -rng.randint(1, 10**6), "float": lambda: rng.random(),
            "huge": lambda: 10**30, "str": lambda: rng.choice(["abc", "http://x", "1", "NaN", "required", "\u0000"]),
            "empty": lambda: rng.choice(["", [], {}]), "none": lambda: None, "bool": lambda: rng.random() < 0.5,
            "list": lambda: [_odd(rng, depth + 1) for _ in range(rng.randint(1, 3))],
            "dict": lambda: {rng.choice(["type", "url", "x", "name"]): _odd(rng, depth + 1)},
            "deep": lambda: json.loads("[" * 200 + "]" * 200), "url": lambda: {"url": _odd(rng, 2)}}[kind]()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(rng: random.Random) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    body["stream"] = rng.random() < 0.4
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(body))
        parent = body
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.7:
            parent[path[-1]] = _odd(rng)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    if rng.random() < 0.2:
        body["stream_options"] = _odd(rng)
    return body


def _check_stream(text: str) -> None:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", text[-300:]
    chunks = [json.loads(e) for e in events[:-1]]
    finished = any(c.get("choices") and c["choices"][0].get("finish_reason") for c in chunks)
    assert finished or any("error" in c for c in chunks), text[-300:]


def test_a_thousand_bodies_never_a_5xx_or_a_broken_stream(emulator):
    server = emulator()
    rng = random.Random(20261128)
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {EMULATOR_KEY}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        bodies = [_mutate(rng) for _ in range(1200)]
        bodies += [{"model": "kimi-k2.7-code", "messages": 3}, {"messages": [], "model": 1}, [1, 2], "x", None]
        for body in bodies:
            response = client.post("/chat/completions", content=json.dumps(body))
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (response.status_code, response.text[:300], body)
            if response.status_code != 200:
                error = response.json()["error"]
                assert set(error) >= {"message", "type"}, error
            elif isinstance(body, dict) and body.get("stream") is True:
                _check_stream(response.text)
            else:
                assert response.json()["choices"][0]["message"]["role"] == "assistant"
        deep = client.post("/chat/completions", content="[" * 100_000 + "]" * 100_000)
        assert deep.status_code == 400
    assert statuses.get(200, 0) >= 50 and statuses.get(400, 0) >= 500, statuses


def test_max_tokens_must_be_positive(emulator):
    server = emulator()
    headers = {"Authorization": f"Bearer {EMULATOR_KEY}"}
    for value in (0, -1, "abc", 1.5, [1]):
        body = {**VALID, "max_tokens": value}
        response = httpx.post(f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=10)
        assert response.status_code == 400 and "max_tokens" in response.json()["error"]["message"], response.text


RAW_BODIES = {
    "5,000-digit integer": b'{"model": "kimi-k2.7-code", "max_tokens": ' + b"9" * 5000
                           + b', "messages": [{"role": "user", "content": "hi"}]}',
    "invalid UTF-8": b"\xff\xfe",
    "UTF-16 JSON": json.dumps({"model": "kimi-k2.7-code", "messages": [{"role": "user", "content": "hi"}]})
                   .encode("utf-16"),
    "unpaired surrogate escape": b'{"model": "kimi-k2.7-code", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "truncated": b'{"model": "kimi-k2.7-code", "messages": [',
}


def test_bodies_python_cannot_read_or_write_back_are_json_400s(emulator):
    """Huge numbers, invalid or non-UTF-8 encodings, lone surrogates: each a JSON 400 in Moonshot's shape, never a 500
    or a dropped connection."""
    server = emulator()
    for name, raw in RAW_BODIES.items():
        response = httpx.post(server.base_url + "/chat/completions", content=raw, timeout=30,
                              headers={"Authorization": f"Bearer {EMULATOR_KEY}", "Content-Type": "application/json"})
        assert response.status_code == 400, (name, response.status_code, response.text[:200])
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"].startswith("Invalid request"), name
