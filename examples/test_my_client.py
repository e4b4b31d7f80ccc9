"""Test your own client against the Kimi emulator: a tool-calling loop must send every assistant tool-call turn back
with its `reasoning_content`, or Kimi answers 400 — and so does `k2probe.emulator()`. Run: pytest test_my_client.py"""

import json

import openai
import pytest

import k2probe

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def get_weather(city: str) -> dict[str, object]:
    return {"city": city, "sky": "clear", "celsius": 21}


def ask_with_tools(client: openai.OpenAI, question: str, keep_reasoning: bool = True) -> str:
    """My client's tool loop: ask, run each tool the model calls, send the results back, until it answers."""
    messages: list[dict[str, object]] = [{"role": "user", "content": question}]
    for _ in range(5):
        reply = client.chat.completions.create(model="kimi-k2.7-code", messages=messages, tools=[WEATHER])
        message = reply.choices[0].message
        if not message.tool_calls:
            return message.content or ""
        turn = message.model_dump(exclude_none=True)  # keeps reasoning_content, a field the SDK does not know
        if not keep_reasoning:
            turn.pop("reasoning_content", None)  # the bug to catch: many agent frameworks drop it
        messages.append(turn)
        for call in message.tool_calls:
            result = get_weather(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    raise RuntimeError("no answer after 5 turns")


@pytest.fixture
def kimi():
    """An OpenAI client pointed at a fresh emulator (no retries: a 400 should surface at once)."""
    with k2probe.emulator() as emu:
        yield openai.OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0)


def test_the_loop_keeps_reasoning_through_a_tool_call(kimi):
    answer = ask_with_tools(kimi, "What is the weather in Paris?")
    assert "clear" in answer  # the tool's result came back through the second turn


def test_a_loop_that_drops_reasoning_gets_kimis_400(kimi):
    with pytest.raises(openai.BadRequestError, match="reasoning_content is missing"):
        ask_with_tools(kimi, "What is the weather in Paris?", keep_reasoning=False)


def test_a_relay_that_strips_reasoning_breaks_the_loop():
    """Behind a gateway that strips reasoning from answers, even a correct loop has nothing to send back."""
    with k2probe.emulator(personality="lossy-relay") as emu:
        client = openai.OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0)
        with pytest.raises(openai.BadRequestError, match="reasoning_content is missing"):
            ask_with_tools(client, "What is the weather in Paris?")
