"""A tool-using agent written the pydantic-ai way (Agent, a tool, OpenAIChatModel on an OpenAI-compatible base URL),
run in a venv of its own by tests/test_proxy_frameworks.py. argv: base URL, key. Prints one JSON line."""

import json
import sys

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

base_url, api_key = sys.argv[1:3]
model = OpenAIChatModel("kimi-k2.7-code", provider=OpenAIProvider(base_url=base_url, api_key=api_key))
agent = Agent(model, model_settings={"max_tokens": 16000})
called = []


@agent.tool_plain
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    called.append(city)
    return json.dumps({"city": city, "sky": "clear"})


result = {}
try:
    result["answer"] = str(agent.run_sync("What is the weather in Paris?").output)
except Exception as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"[:600]
result["tool_calls"] = ["get_weather"] * len(called)
print(json.dumps(result))
