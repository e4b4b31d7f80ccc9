"""A two-step tool loop written the LangChain way (ChatOpenAI, streaming, bind_tools), run in a venv of its own by
tests/test_client_frameworks.py. argv: base URL, key, thinking on|off. Prints one JSON line: what happened."""

import json
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return json.dumps({"city": city, "sky": "clear"})


base_url, api_key, thinking = sys.argv[1:4]
extra = {} if thinking == "on" else {"extra_body": {"thinking": {"type": "disabled"}}}
model = ChatOpenAI(model="kimi-k2.7-code", base_url=base_url, api_key=api_key, streaming=True, max_retries=0,
                   **extra).bind_tools([get_weather])
messages = [HumanMessage("What is the weather in Paris?")]
first = model.invoke(messages)
result = {"tool_calls": [c["name"] for c in first.tool_calls]}
messages.append(first)
messages += [ToolMessage(get_weather.invoke(c["args"]), tool_call_id=c["id"]) for c in first.tool_calls]
try:
    result["answer"] = str(model.invoke(messages).content)
except Exception as exc:  # the second request's refusal is what the test looks at
    result["error"] = f"{type(exc).__name__}: {exc}"[:600]
print(json.dumps(result))
