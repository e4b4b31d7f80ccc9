"""An agent attempt as a page shows it, read from the store: the task, each step (its reasoning, what it said, every
tool call with its arguments and result), the verdict of the hidden tests with the failing tests' lines, the patch,
and tokens, cost and latency. Shared by the agent page and the eval page's repository samples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from k2probe.core.results import Attempt
from k2probe.eval.pytestproof import FailedTest, own_frames_removed, proof_of
from k2probe.recording import queries
from k2probe.recording.store import Store

REASONING_KEYS = ("reasoning_content", "reasoning", "reasoning_details")
RESULT_CHARS = 4000  # of a tool's result on the page (the store keeps more)


@dataclass
class ToolView:
    name: str
    arguments: str
    result: str
    failure: str | None = None
    tests: str | None = None


@dataclass
class StepView:
    index: int
    reasoning: str
    content: str
    tools: list[ToolView]
    latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    error: str | None


@dataclass
class AttemptView:
    id: str
    sample_id: str | None
    task_id: str | None
    statement: str
    route: str
    model: str
    status: str
    end_reason: str | None
    verdict_reason: str
    command: str
    proof: str
    failed_tests: list[FailedTest]
    diff: str
    steps: list[StepView] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    seconds: float | None = None


def _reasoning(message: dict[str, Any]) -> str:
    for key in REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list) and value:
            return "\n".join(str(item.get("text", item)) if isinstance(item, dict) else str(item) for item in value)
    return ""


def _arguments(text: str) -> str:
    """A tool call's arguments, one per line, a multi-line string (a patch, a file's content) as its own lines; as
    sent when they are not a JSON object (a malformed call shows as it came)."""
    try:
        parsed = json.loads(text)
    except (ValueError, TypeError):
        return text
    if not isinstance(parsed, dict):
        return json.dumps(parsed, indent=2, ensure_ascii=False)
    return "\n".join(f"{key}:\n{value}" if isinstance(value, str) and "\n" in value
                     else f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in parsed.items())


def _step(record: dict[str, Any]) -> StepView:
    message = record.get("assistant") or {}
    tools = [ToolView(str(t.get("name") or ""), _arguments(str(t.get("arguments") or "")),
                      str(t.get("result") or "")[:RESULT_CHARS], t.get("failure"), t.get("tests"))
             for t in record.get("tools") or []]
    content = message.get("content")
    return StepView(int(record.get("index") or 0), _reasoning(message), content if isinstance(content, str) else
                    json.dumps(content, ensure_ascii=False) if content else "", tools, record.get("latency_ms"),
                    int(record.get("prompt_tokens") or 0), int(record.get("completion_tokens") or 0),
                    int(record.get("reasoning_tokens") or 0), record.get("cost_usd"), record.get("error"))


def attempt_view(attempt: Attempt, steps: list[dict[str, Any]]) -> AttemptView:
    v = attempt.verification or {}
    output = str(v.get("output") or "")
    status = str(v.get("status") or attempt.status)
    proof, failing = proof_of(output) if status == "failed" else (own_frames_removed(output), [])
    views = [_step(r) for r in steps]
    return AttemptView(
        attempt.id, attempt.sample_id, attempt.task_id, attempt.statement, attempt.route, attempt.model, attempt.status,
        attempt.end_reason, str(v.get("reason") or ""), str(v.get("command") or ""), proof, failing,
        attempt.diff or "", views, attempt.prompt_tokens, attempt.completion_tokens, attempt.reasoning_tokens,
        attempt.cost_usd, sum(s.latency_ms or 0.0 for s in views),
        attempt.finished_at - attempt.started_at if attempt.finished_at else None)


def attempt_views(store: Store, run_id: str) -> list[AttemptView]:
    """The run's attempts with their steps, in the order they started."""
    attempts = sorted(store.attempts(run_id), key=lambda a: a.started_at)
    steps = queries.attempt_steps(store, [a.id for a in attempts])
    return [attempt_view(a, steps[a.id]) for a in attempts]
