"""A two-step tool loop with the openai SDK, the history kept one of two ways teams write it: `object` appends the
SDK's own message, `dump` its model_dump(), `dict` a hand-built {role, content, tool_calls} dict. Run in a venv of its own by
tests/test_proxy_frameworks.py. argv: base URL, key, object|dump|dict, stream on|off. Prints one JSON line."""

import json
import sys

import openai

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

base_url, api_key, style, stream = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
result = {}


def turn():
    if stream != "on":
        return client.chat.completions.create(model="kimi-k2.7-code", messages=messages, tools=[WEATHER],
                                              max_tokens=16000).choices[0].message
    with client.chat.completions.stream(model="kimi-k2.7-code", messages=messages, tools=[WEATHER],
                                        max_tokens=16000) as events:
        reasoning = []
        for event in events:
            if event.type == "chunk" and event.chunk.choices:
                piece = getattr(event.chunk.choices[0].delta, "reasoning_content", None)
                reasoning.append(piece or "")
        message = events.get_final_completion().choices[0].message
    message.reasoning_content = "".join(reasoning)  # the stream helper does not gather a field it does not know
    return message


try:
    first = turn()
    result["tool_calls"] = [c.function.name for c in first.tool_calls or []]
    if style == "object":
        messages.append(first)  # the SDK's own message object, as its docs' tool loop does
    elif style == "dump":
        messages.append(first.model_dump(exclude_none=True))
    else:
        messages.append({"role": "assistant", "content": first.content or "",
                         "tool_calls": [{"id": c.id, "type": "function",
                                         "function": {"name": c.function.name, "arguments": c.function.arguments}}
                                        for c in first.tool_calls]})
    messages += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps({"sky": "clear"})}
                 for c in first.tool_calls]
    result["answer"] = turn().content
except openai.APIError as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"[:600]
print(json.dumps(result))
