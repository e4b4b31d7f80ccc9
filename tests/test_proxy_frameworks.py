"""Real frameworks, from a venv of their own ($K2PROBE_CLIENTS), pointed at the proxy in front of the emulator: what
keeps the Kimi contract gives no finding; what drops reasoning is flagged on exactly the request Moonshot refuses;
repair mode lets it finish with the model's own reasoning sent back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import k2probe
from k2probe.proxy.app import Mode

from .clientvenv import client_python
from .proxyhelp import Proxied, proxied

CLIENTS = Path(__file__).parent / "clients"


def _run(program: str, *args: str, mode: Mode = "observe") -> tuple[dict[str, Any], Proxied]:
    with k2probe.emulator() as emu, proxied(emu, mode) as proxy:
        done = subprocess.run([client_python(), str(CLIENTS / program), proxy.base_url, "sk-client-side", *args],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-1500:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        proxy.settle(2)
    return result, proxy


@pytest.mark.parametrize("program,args", [
    ("openai_tool_loop.py", ("object", "off")), ("openai_tool_loop.py", ("object", "on")),
    ("openai_tool_loop.py", ("dump", "off")), ("pydantic_ai_tool_loop.py", ()),
], ids=["openai-object", "openai-object-stream", "openai-model-dump", "pydantic-ai"])
def test_frameworks_that_keep_reasoning_give_no_finding(program: str, args: tuple[str, ...]) -> None:
    result, proxy = _run(program, *args)
    assert "error" not in result and result["tool_calls"] == ["get_weather"] and "clear" in result["answer"]
    assert len(proxy.handled) == 2 and all(h.record.status == 200 for h in proxy.handled)
    assert proxy.kinds() == [[], []]


@pytest.mark.parametrize("program,args", [
    ("openai_tool_loop.py", ("dict", "off")), ("openai_tool_loop.py", ("dict", "on")),
    ("langchain_tool_loop.py", ("on",)),
], ids=["openai-hand-built-dict", "openai-hand-built-dict-stream", "langchain-chatopenai"])
def test_frameworks_that_drop_reasoning_are_flagged_on_exactly_the_request_that_400s(
        program: str, args: tuple[str, ...]) -> None:
    result, proxy = _run(program, *args)
    refused = "reasoning_content is missing in assistant tool call message at index 1"
    assert refused in result["error"]
    dropped = [h for h in proxy.handled if any(f.kind == "reasoning_dropped" for f in h.findings)]
    failed = [h for h in proxy.handled if h.record.status == 400]
    assert [h.number for h in dropped] == [h.number for h in failed] == [2]
    finding = next(f for f in dropped[0].findings if f.kind == "reasoning_dropped")
    assert finding.would_400 and finding.pointer == "/messages/1/reasoning_content"
    assert finding.message == failed[0].record.error_message  # what the proxy predicted is what Moonshot answered
    assert "relayed" in finding.evidence and not finding.repaired


def test_repair_lets_the_langchain_loop_finish_with_the_models_own_reasoning() -> None:
    result, proxy = _run("langchain_tool_loop.py", "on", mode="repair")
    assert "error" not in result and "clear" in result["answer"]
    first, second = proxy.settle(2)
    assert first.findings == [] or all(f.kind == "no_max_tokens" for f in first.findings)
    relayed = next(iter(proxy.server.proxy.memory.calls.values()))
    assert relayed.request == 1 and relayed.reasoning  # what the model said while making the call
    sent = second.record.request["messages"][1]  # what went upstream in the second request
    assert sent["reasoning_content"] == relayed.reasoning and second.record.status == 200
    finding = next(f for f in second.findings if f.kind == "reasoning_dropped")
    assert finding.repaired and "put back" in finding.evidence
