"""The `toolcalls` suite: one request per case offering its tools, the answer judged against the label and the tools'
JSON Schemas (data, not code: nothing of it runs). It adds trigger precision / recall / F1, schema accuracy and
finish_reason consistency to each route's metrics. The emulator plays it with the labelled call, broken at
`tool_fault_rate` the ways a vendor's deployment breaks them."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import TYPE_CHECKING, Any

from k2probe.core.results import Outcome, Verdict
from k2probe.eval.suite import Attempt, BaseSuite, Played, PlayRequest, RouteModel
from k2probe.eval.toolscore import judge_tool_answer, trigger_scores
from k2probe.tasks.toolcalls import SUITE, TOOLS, ToolCase, case_in_text, cases

if TYPE_CHECKING:
    from k2probe.core.results import Sample
    from k2probe.sandbox.executor import Executor

TOOL_FAULTS = ("unparsable", "missing_required", "as_text")
_asked: Counter[tuple[int, str]] = Counter()  # how many times the emulator was asked each case (per seed)


def _answer_text(message: dict[str, Any] | None) -> str:
    """What the model answered, for a person to read on the report: its text, then each tool call it made."""
    message = message or {}
    calls = [f"{(c.get('function') or {}).get('name')}({(c.get('function') or {}).get('arguments')})"
             for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False) if content else ""
    return "\n".join([*([text] if text.strip() else []), *(f"tool call: {c}" for c in calls)]) or "(nothing)"


class ToolCallSuite(BaseSuite):
    name = SUITE

    def samples(self) -> list[ToolCase]:
        return list(cases())

    async def solve(self, sample: ToolCase, model: RouteModel) -> Attempt:
        outcome = await model.chat(sample.prompt, purpose=f"eval {sample.task_id}", tool_choice="auto",
                                   tools=sample.tool_schemas())
        return Attempt((outcome.message, outcome.finish_reason), completion=_answer_text(outcome.message))

    async def score(self, sample: ToolCase, attempt: Attempt, executor: Executor) -> Verdict:
        message, finish_reason = attempt.answer
        judged = judge_tool_answer(sample, message, finish_reason)
        details = dict(judged["verification"])
        proof = str(details.pop("output", ""))
        details.pop("status", None)
        details.pop("reason", None)
        return Verdict(outcome=Outcome(judged["outcome"]), reason=judged["reason"], proof=proof, details=details)

    def metrics(self, samples: list[Sample]) -> dict[str, Any]:
        details = [s.verdict.details for s in samples if s.verdict is not None
                   and s.verdict.details.get("kind") == "toolcall"]
        return {"toolcalls": trigger_scores(details)} if details else {}

    def play(self, request: PlayRequest) -> Played | None:
        if not request.tools or len(request.messages) != 1 or not isinstance(request.messages[0], dict):
            return None
        case = case_in_text(request.user_text() or "")
        if case is None:
            return None
        nth = _asked[(request.seed, case.task_id)]
        _asked[(request.seed, case.task_id)] += 1
        rng = random.Random(f"{request.seed}:{case.task_id}:{nth}")
        if not case.expect_call or case.expected_tool not in request.offered:
            return Played("This is a question I can answer from what I know; no tool is needed.",
                          f"Here is a short answer to: {case.prompt}")
        arguments = dict(case.arguments)
        fault = TOOL_FAULTS[rng.randrange(len(TOOL_FAULTS))] if rng.random() < request.tool_fault_rate else None
        name = str(case.expected_tool)
        if fault == "as_text":
            return Played(f"I will call {name}.",
                          f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(arguments)}}}</tool_call>')
        raw = json.dumps(arguments)
        if fault == "missing_required":
            required = TOOLS[name]["function"]["parameters"]["required"]
            raw = json.dumps({k: v for k, v in arguments.items() if k != required[0]})
        elif fault == "unparsable":
            raw = raw[:-1] + ",}"
        return Played(f"The user needs {name}; I will call it with what they gave.",
                      tool_calls=[(f"{name}_0", name, raw)])
