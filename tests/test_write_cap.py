"""One attempt's writes are capped, and what is stored stays proportional to what was written: a hostile model's turn
of N write_file calls of 1 MiB stops at the cap, and K2PROBE_HOME grows by a small multiple of what was accepted
(it grew by about 8× what was written before: the content in the step, again in its tool log, both again in the
trajectory, then the diff twice and the request once)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from k2probe.agent import AgentLimits, AgentTask, run_agent
from k2probe.agent.tools import MAX_ATTEMPT_WRITE_BYTES
from k2probe.api import command_contexts

from .hostile import HostileModel

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="the agent's tests run in the sandbox")
MIB = 1024 * 1024
LINE = "abcdefghij" * 6 + "klm\n"
CONTENT = (LINE * (MIB // len(LINE) + 1))[:MIB]  # 1 MiB of text, as a model would write it


class BurstModel(HostileModel):
    """One assistant turn with `count` write_file calls of 1 MiB each, then finish."""

    def __init__(self, count: int) -> None:
        super().__init__([])
        self.count = count

    def answer(self, index: int) -> dict[str, Any]:
        if index > 0:
            return super().answer(index)  # past the (empty) script: finish
        calls = [{"id": f"w{i}", "type": "function",
                  "function": {"name": "write_file", "arguments": json.dumps({"path": f"big{i}.txt", "content": CONTENT})}}
                 for i in range(self.count)]
        message = {"role": "assistant", "content": "", "reasoning_content": "I fill the disk.", "tool_calls": calls}
        return {"id": "chatcmpl-0", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}


def _home_bytes(home: Path) -> int:
    return sum(f.stat().st_size for f in home.rglob("*") if f.is_file())


def _burst(workdir: Path, monkeypatch: pytest.MonkeyPatch, count: int):
    repo = workdir / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    model = BurstModel(count).start()
    monkeypatch.setenv("AI_GATEWAY_BASE_URL", model.base_url)
    monkeypatch.setenv("AI_GATEWAY_API_KEY", "sk-hostile-burst-4b1f0e")
    try:
        with command_contexts("agent") as (routed, run):
            result = asyncio.run(run_agent(routed, run, AgentTask("do the task", repo, "python -m pytest -q "
                                                              "-p no:cacheprovider tests", None, None), AgentLimits()))
    finally:
        model.stop()
    return result, model


def test_n_writes_of_1_mib_stop_at_the_cap_and_the_home_grows_by_a_small_multiple(workdir, monkeypatch):
    accepted = MAX_ATTEMPT_WRITE_BYTES // MIB
    result, model = _burst(workdir, monkeypatch, accepted + 4)
    written = [f"big{i}.txt" for i in range(accepted)]
    assert all(f"+++ b/{name}" in result.diff for name in written)  # the first ones, up to the cap, were written
    assert f"big{accepted}.txt" not in result.diff
    assert result.loop.failures == {"write_limit": 4}  # each one past the cap refused, as a tool error…
    assert result.loop.end_reason == "tool_failures" and len(model.requests) == 1  # …four in a row end the attempt
    results = [t.result for t in result.loop.steps[0].tools]
    assert all(r.startswith("ERROR (write_limit): write refused") for r in results[accepted:])
    grown = _home_bytes(workdir / "home")
    assert grown < 3 * accepted * MIB, f"K2PROBE_HOME grew {grown / MIB:.1f} MiB for {accepted} MiB accepted"
    trajectory = Path(result.trajectory)  # the contents once (the diff), no longer in each step twice besides
    assert trajectory.stat().st_size < 1.5 * accepted * MIB and "cut for storage: " in trajectory.read_text()


def test_under_the_cap_the_attempt_goes_on_and_the_refusal_reaches_the_model(workdir, monkeypatch):
    accepted = MAX_ATTEMPT_WRITE_BYTES // MIB
    result, model = _burst(workdir, monkeypatch, accepted + 1)
    assert result.loop.end_reason == "finished" and result.loop.failures == {"write_limit": 1}
    sent_back = model.tool_results()
    assert len(sent_back) == accepted + 1 and "write refused" in sent_back[-1] and "wrote big0.txt" in sent_back[0]
    grown = _home_bytes(workdir / "home")  # the request that followed carries every byte the model sent, stored once
    assert grown < 4 * accepted * MIB, f"K2PROBE_HOME grew {grown / MIB:.1f} MiB for {accepted} MiB accepted"
    assert not os.path.exists(workdir / "repo" / "big0.txt")  # the user's repository is never written
