"""Client code the way teams write it, against the emulator: what works at Moonshot must work here, and fail here only
where it would fail there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import openai

import k2probe

from .clientvenv import client_python

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _streamed_turn(client: openai.OpenAI, messages: list[dict[str, Any]]) -> tuple[Any, str]:
    """One turn through the SDK's own `.stream()` helper (it accumulates deltas by their `index`), with the
    reasoning collected from the chunks (a field the SDK does not know)."""
    reasoning: list[str] = []
    with client.chat.completions.stream(model="kimi-k2.7-code", messages=messages, tools=[WEATHER]) as stream:
        for event in stream:
            if event.type == "chunk" and event.chunk.choices:
                piece = getattr(event.chunk.choices[0].delta, "reasoning_content", None)
                if piece:
                    reasoning.append(piece)
        final = stream.get_final_completion()
    return final.choices[0].message, "".join(reasoning)


def test_the_sdks_stream_helper_completes_a_two_step_tool_loop() -> None:
    """Every streamed tool-call delta carries its `index` (the live API's shape): the helper raised without it."""
    with k2probe.emulator() as emu:
        client = openai.OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0)
        messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
        message, reasoning = _streamed_turn(client, messages)
        assert message.tool_calls and message.tool_calls[0].function.name == "get_weather"
        assert json.loads(message.tool_calls[0].function.arguments)  # the pieces joined into one JSON document
        assert reasoning
        messages.append({"role": "assistant", "content": message.content or "", "reasoning_content": reasoning,
                         "tool_calls": [{"id": c.id, "type": "function",
                                         "function": {"name": c.function.name, "arguments": c.function.arguments}}
                                        for c in message.tool_calls]})
        messages += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps({"sky": "clear"})}
                     for c in message.tool_calls]
        answer, _ = _streamed_turn(client, messages)
        assert not answer.tool_calls and "clear" in (answer.content or "")


def test_langchain_streaming_tool_calls_reach_the_second_request_and_get_kimis_own_400() -> None:
    """LangChain's ChatOpenAI(streaming=True) gathers tool-call arguments by delta index: the first turn's call arrives
    whole. Its second request drops `reasoning_content` (LangChain does not keep it), and the emulator answers what
    Moonshot answers — the framework's fault shown as the contract's 400, not a stream the live API would never send."""
    script = Path(__file__).parent / "clients" / "langchain_tool_loop.py"
    with k2probe.emulator() as emu:
        done = subprocess.run([client_python(), str(script), emu.base_url, emu.api_key, "on"],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tool_calls"] == ["get_weather"]
    assert "reasoning_content is missing in assistant tool call message at index 1" in result["error"]
