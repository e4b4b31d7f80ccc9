"""The tool-calling loop: keep every assistant message exactly as received (reasoning included), run its tool calls,
log each step, stop on a named limit; mini-swe-agent's shape, made correct for thinking models."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from k2probe.agent.stored import stored_copy
from k2probe.agent.tools import TOOL_SCHEMAS, Finished, ToolFailure, Tools
from k2probe.client.media import Media
from k2probe.client.transport import Transport
from k2probe.contexts import RouteContext
from k2probe.core.failures import Failure
from k2probe.core.noanswer import unanswered
from k2probe.core.records import linked
from k2probe.core.sanitize import sanitise

SYSTEM_PROMPT = (
    "You are a careful software engineer working in a Python repository through tools. Look at the code before "
    "changing it, make the smallest correct change, run the tests with run_tests, and call finish with a one-line "
    "summary when the task is done. Paths are relative to the repository root."
)
RESULT_LOG_CHARS = 2000
REASONING_KEYS = ("reasoning_content", "reasoning", "reasoning_details")

History = list[dict[str, Any]]


class LimitReached(Exception):
    """A limit ended the loop: `reason` is steps, cost, timeout, context or tool_failures."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class AgentLimits:
    max_steps: int = 30
    max_cost_usd: float | None = None
    timeout_s: float = 900.0
    max_consecutive_failures: int = 3
    context_fraction: float = 0.9


@dataclass
class ToolLog:
    id: str | None
    name: str
    arguments: str
    result: str
    result_chars: int
    failure: str | None = None
    tests: str | None = None  # run_tests: passed | failed | error (a failed test run is no tool failure)


@dataclass
class Step:
    """One request and what came of it: the assistant message as received and each tool call's result."""

    index: int
    reasoning_preserved: bool | None  # every earlier tool-call turn still carried its reasoning when sent
    assistant: dict[str, Any] | None = None
    tools: list[ToolLog] = field(default_factory=list)
    latency_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    error: str | None = None


@dataclass
class LoopResult:
    end_reason: str  # finished | steps | cost | timeout | context | tool_failures | api_error | node_lost
    detail: str
    steps: list[Step]
    failures: Counter[str]
    summary: str | None = None
    unanswered: str | None = None  # api_error: why the route gave no usable answer (core/noanswer.py's rule)

    @property
    def cost_usd(self) -> float | None:
        costs = [s.cost_usd for s in self.steps if s.cost_usd is not None]
        return sum(costs) if costs else None


def reasoning_kept(history: History) -> bool:
    """Does every assistant message with tool calls still carry its reasoning?"""
    return all(any(message.get(key) is not None for key in REASONING_KEYS)
               for message in history if message.get("role") == "assistant" and message.get("tool_calls"))


def _truncate(text: str) -> str:
    return text if len(text) <= RESULT_LOG_CHARS else text[:RESULT_LOG_CHARS] + f"… [{len(text)} chars in all]"


class AgentLoop:
    """Runs one task: `history_transform` lets a test (or a framework under study) rewrite what is sent."""

    def __init__(self, routed: RouteContext, transport: Transport, toolbox: Tools, statement: str,
                 limits: AgentLimits | None = None, *, on_step: Callable[[Step], None] | None = None,
                 history_transform: Callable[[History], History] | None = None,
                 media: list[Media] | None = None) -> None:
        self.routed = routed
        self.transport = transport
        self.toolbox = toolbox
        self.limits = limits or AgentLimits()
        self.on_step = on_step
        self.transform = history_transform
        text = f"Task:\n{statement}"
        content: str | list[dict[str, Any]] = [{"type": "text", "text": text}, *(m.part() for m in media)] \
            if media else text
        self.history: History = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]
        self.media_records = [m.record() for m in media or []]
        self.steps: list[Step] = []
        self.failures: Counter[str] = Counter()
        self.in_a_row = 0
        self.started = time.monotonic()
        self.unanswered: str | None = None

    async def run(self) -> LoopResult:
        try:
            while True:
                self._check_limits()
                await self._step()
        except Finished as done:
            return LoopResult("finished", "the model called finish", self.steps, self.failures, done.summary)
        except LimitReached as stop:
            return LoopResult(stop.reason, stop.detail, self.steps, self.failures, unanswered=self.unanswered)

    def _check_limits(self) -> None:
        limits = self.limits
        if len(self.steps) >= limits.max_steps:
            raise LimitReached("steps", f"{limits.max_steps} steps without finishing")
        spent = sum(s.cost_usd or 0.0 for s in self.steps)
        if limits.max_cost_usd is not None and spent >= limits.max_cost_usd:
            raise LimitReached("cost", f"spent ${spent:.4f} of ${limits.max_cost_usd:.4f}")
        if time.monotonic() - self.started >= limits.timeout_s:
            raise LimitReached("timeout", f"{limits.timeout_s:.0f} s wall time used")
        last = self.steps[-1].prompt_tokens if self.steps else 0
        window = self.routed.profile.context_window
        if last > limits.context_fraction * window:
            raise LimitReached("context", f"prompt at {last} tokens of a {window}-token window")
        if self.in_a_row >= limits.max_consecutive_failures:
            raise LimitReached("tool_failures", f"{self.in_a_row} failed tool calls in a row")

    async def _step(self) -> None:
        outgoing = self.transform(self.history) if self.transform else self.history
        preserved = reasoning_kept(outgoing) if self.routed.profile.reasoning_in_history else None
        step = Step(len(self.steps), preserved)
        body = sanitise({"model": self.routed.route.model, "messages": outgoing, "tools": TOOL_SCHEMAS,
                         "tool_choice": "auto"}, self.routed.profile).body
        remaining = self.limits.timeout_s - (time.monotonic() - self.started)
        try:
            with linked(step=step.index):
                chat = self.transport.chat(body, media=self.media_records, purpose=f"agent step {step.index + 1}")
                outcome = await asyncio.wait_for(chat, timeout=max(remaining, 0.001))
        except TimeoutError as exc:
            raise LimitReached("timeout", f"{self.limits.timeout_s:.0f} s wall time used") from exc
        call = outcome.last
        step.latency_ms, step.cost_usd = call.latency_ms, call.cost_usd
        step.prompt_tokens, step.completion_tokens = call.prompt_tokens, call.completion_tokens
        step.reasoning_tokens = call.reasoning_tokens
        if outcome.failure is not None or outcome.message is None:
            failure = outcome.failure or Failure(call.status, "empty_response", "the answer carried no message")
            step.error = failure.line()
            self.unanswered = unanswered(failure, len(outcome.calls))
            self._log(step)
            raise LimitReached("api_error", step.error)
        message = outcome.message
        step.assistant = message
        if message.get("tool_calls") or str(message.get("content") or "").strip():
            self.history.append(message)  # exactly as received: reasoning_content and all
        # an empty turn (no tool call, no text) is logged but not sent back: an empty assistant message is a 400
        try:
            await self._run_tools(message, step)
        finally:
            self._log(step)

    async def _run_tools(self, message: dict[str, Any], step: Step) -> None:
        calls = message.get("tool_calls") or []
        if not calls:
            kind = "no_tool_call"
            text = ("ERROR (no_tool_call): answer with a tool call; call finish when the task is done."
                    if (message.get("content") or "").strip() else
                    "ERROR (no_tool_call): the reply had neither a tool call nor an answer.")
            self._failed(kind)
            step.tools.append(ToolLog(None, "(none)", "", text, len(text), kind))
            self.history.append({"role": "user", "content": text})
            return
        for call in calls:
            function = call.get("function") or {}
            name, arguments = str(function.get("name") or ""), str(function.get("arguments") or "")
            try:
                output = await self.toolbox.call(name, arguments)
            except ToolFailure as failure:
                self._failed(failure.kind)
                text = f"ERROR ({failure.kind}): {failure.message}"
                step.tools.append(ToolLog(call.get("id"), name, arguments, _truncate(text), len(text), failure.kind))
            except Finished:
                step.tools.append(ToolLog(call.get("id"), name, arguments, "finished", 8))
                raise
            else:
                self.in_a_row = 0
                text = output.text
                step.tools.append(ToolLog(call.get("id"), name, arguments, _truncate(text), len(text),
                                          tests=output.tests))
            self.history.append({"role": "tool", "tool_call_id": call.get("id"), "name": name, "content": text})

    def _failed(self, kind: str) -> None:
        self.failures[kind] += 1
        self.in_a_row += 1

    def _log(self, step: Step) -> None:
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)


def append_trajectory(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line to the trajectory (the attempt, then each step as it happens, then the outcome): a step
    costs its own size, and a killed run leaves every line written before it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, default=str, ensure_ascii=False) + "\n")


def read_trajectory(path: Path) -> dict[str, Any]:
    """A trajectory file as one document: the attempt's fields, `steps` in order, and `outcome` (None if unfinished)."""
    document: dict[str, Any] = {"steps": [], "outcome": None}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        kind = entry.pop("type", None)
        if kind == "step":
            document["steps"].append(entry)
        elif kind == "outcome":
            document["outcome"] = entry
        else:
            document.update({k: v for k, v in entry.items() if k not in ("steps", "outcome")})
    return document


def step_dict(step: Step) -> dict[str, Any]:
    """The step as stored and written to the trajectory (long strings cut: agent/stored.py)."""
    return stored_copy(asdict(step))
