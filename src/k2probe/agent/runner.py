"""Run one task through the loop: private workspace, sandboxed tests, trajectory after every step, final verification."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2probe.agent.loop import AgentLimits, AgentLoop, History, LoopResult, Step, append_trajectory, step_dict
from k2probe.agent.space import Checks, NodeLost, Space, final_check, open_space
from k2probe.agent.workspace import Workspace
from k2probe.client.media import Media
from k2probe.client.uploads import deliver
from k2probe.contexts import RouteContext, RunContext
from k2probe.core.config import home
from k2probe.core.records import linked, links
from k2probe.core.results import AttemptResult, Outcome
from k2probe.sandbox.executor import Executor, executor_for
from k2probe.sandbox.isolation import Isolation, Limits, isolation
from k2probe.sandbox.outcome import Verification
from k2probe.sandbox.runtime import Runtime
from k2probe.tasks.shipped import Task

if TYPE_CHECKING:
    from k2probe.sandbox.guarded import Expected


@dataclass
class AgentTask:
    """What to do, where, and how to check it. Hidden tests are laid in only for the final verification."""

    statement: str
    repo: Path
    test_cmd: str
    hidden: Path | None = None
    hidden_cmd: str | None = None
    task_id: str | None = None
    suite: str | None = None
    media: list[Media] = field(default_factory=list)  # screenshots or clips that come with the statement
    force_upload: bool = False
    shipped: Task | None = None  # a shipped task: its harness is proven (preflight) before the model is judged by it
    runtime: Runtime = field(default_factory=Runtime.own)  # what the tests run with

    @classmethod
    def from_suite(cls, task: Task) -> AgentTask:
        return cls(task.statement, task.repo, task.test_cmd, task.hidden if task.has_hidden else None,
                   task.verify_cmd, task.id, task.suite, shipped=task)


@dataclass
class AgentResult:
    run_id: str
    attempt_id: str
    task: AgentTask
    loop: LoopResult
    verification: Verification
    diff: str
    trajectory: str
    isolation: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verification.passed

    def tokens(self) -> dict[str, int]:
        steps = self.loop.steps
        return {"prompt_tokens": sum(s.prompt_tokens for s in steps),
                "completion_tokens": sum(s.completion_tokens for s in steps),
                "reasoning_tokens": sum(s.reasoning_tokens for s in steps)}

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "attempt_id": self.attempt_id, "task": self.task.task_id,
            "statement": self.task.statement,
            "verification": self.verification.as_json(),
            "end_reason": self.loop.end_reason, "end_detail": self.loop.detail, "summary": self.loop.summary,
            "steps": len(self.loop.steps), "tool_call_failures": dict(self.loop.failures),
            "reasoning_preserved": [s.reasoning_preserved for s in self.loop.steps],
            **self.tokens(), "cost_usd": self.loop.cost_usd, "diff": self.diff, "trajectory": self.trajectory,
            "isolation": self.isolation,
        }


VERIFY_GRACE_S = 5.0  # verification may run this long past --timeout (at most 15% of it), so a run still gets a verdict


def checks_of(task: AgentTask) -> Checks:
    """How the attempt's final state is judged (agent/space.py)."""
    return Checks(task.test_cmd, task.hidden_cmd, task.hidden, task.runtime)


async def expected_of(task: AgentTask, executor: Executor) -> Expected | None:
    """The hidden tests a guarded verification must report, as the task's preflight found them (on this machine, where
    the results are written); None when there are none to know."""
    if checks_of(task).guarded and task.shipped is not None:
        return await executor.expected(task.shipped, task.runtime)
    return None


async def verify(workspace: Workspace, task: AgentTask, limits: Limits, executor: Executor) -> Verification:
    """The hidden tests (or the task's test command) on a fresh private copy of the final state, hidden tests laid in
    by the sandbox itself (whatever the workspace has at their place is replaced, never written through). The hidden
    tests run under the guarded runner, checked against the tests the preflight found; any other command is judged
    by its exit status only."""
    return await final_check(workspace.root, checks_of(task), limits, executor, await expected_of(task, executor))


async def run_agent(routed: RouteContext, run: RunContext, task: AgentTask, limits: AgentLimits | None = None,
                    sandbox_limits: Limits | None = None, *, on_step: Callable[[Step], None] | None = None,
                    history_transform: Callable[[History], History] | None = None,
                    iso: Isolation | None = None, executor: Executor | None = None) -> AgentResult:
    """The loop on a private copy of `task.repo` against the route `routed`, every step stored in `run` and written
    to the trajectory file. `--timeout`
    bounds it all: requests, test runs and (with a short grace) the verification. An attempt whose route stopped
    answering is `error` and never verified (core/noanswer.py). The attempt always ends recorded: an exception or an
    interrupt marks it `error` before it propagates."""
    limits = limits or AgentLimits()
    sandbox_limits = sandbox_limits or Limits()
    executor = executor or executor_for(iso or isolation())
    iso = executor.isolation
    started = time.monotonic()
    deadline = started + limits.timeout_s
    store = run.store
    iso_record = asdict(iso)
    attempt_id = store.start_attempt(run.run_id, task_id=task.task_id, suite=task.suite,
                                     route=routed.route.name, model=routed.route.model,
                                     statement=task.statement, isolation=iso_record,
                                     sample_id=links().get("sample_id"))
    path = home() / "trajectories" / f"{attempt_id}.jsonl"
    document: dict[str, Any] = {"attempt_id": attempt_id, "task": task.task_id, "statement": task.statement,
                                "route": routed.route.public(), "limits": asdict(limits), "isolation": iso_record}
    append_trajectory(path, run.redactor.value({"type": "attempt", **document}))
    document["steps"] = 0

    def logged(step: Step) -> None:
        record = step_dict(step)
        store.add_step(attempt_id, step.index, step.reasoning_preserved, [t.failure for t in step.tools if t.failure],
                       step.latency_ms, record)
        document["steps"] += 1
        append_trajectory(path, run.redactor.value({"type": "step", **record}))
        if on_step is not None:
            on_step(step)

    space: Space | None = None
    try:
        failed_preflight = await executor.preflight(task.shipped, task.runtime) if task.shipped else None
        if failed_preflight is not None:  # the harness cannot judge here: no request is sent, nothing is blamed
            pf = failed_preflight
            bad = pf.untouched if pf.untouched.status == Outcome.ERROR or pf.untouched.passed else pf.solved
            outcome = LoopResult("preflight", pf.detail, [], Counter())
            verification = Verification(Outcome.ERROR, f"preflight failed: {pf.detail}", bad.command, bad.output)
            return _finish(run, attempt_id, task, outcome, verification, "", path, document, iso_record)
        loop: AgentLoop | None = None
        try:
            # the workspace and its tools: here, or on the cluster node the executor places the attempt on
            space = await open_space(executor, task.repo, checks_of(task), sandbox_limits, deadline)
            if space.node is not None:
                iso_record = {**iso_record, "node": space.node}
            # an HTTP client's set-up: off the loop
            async with await asyncio.to_thread(routed.transport, run.record) as transport:
                with linked(attempt_id=attempt_id):
                    if task.media:
                        await deliver(transport, task.media, force_upload=task.force_upload)
                    loop = AgentLoop(routed, transport, space, task.statement, limits, on_step=logged,
                                     history_transform=history_transform, media=task.media)
                    outcome = await loop.run()
            if outcome.unanswered is not None:  # nothing of the model's to judge: no hidden test runs
                verification = Verification(Outcome.ERROR, outcome.unanswered, "", outcome.detail)
            else:
                grace = min(VERIFY_GRACE_S, 0.15 * limits.timeout_s)
                expected = await expected_of(task, executor)
                verification = await space.check(sandbox_limits.within(deadline + grace - time.monotonic()), expected)
            diff = await space.diff()
        except NodeLost as lost:  # the machine holding the workspace went away: the harness's error, not the model's
            steps, failures = (loop.steps, loop.failures) if loop is not None else ([], Counter[str]())
            outcome = LoopResult("node_lost", str(lost), steps, failures)
            verification, diff = Verification(Outcome.ERROR, str(lost), ""), ""
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
        reason = "interrupted" if interrupted else f"k2probe failed: {type(exc).__name__}: {exc}"
        store.finish_attempt(attempt_id, AttemptResult(
            status=Outcome.ERROR, end_reason="interrupted" if interrupted else "crashed",
            verification={"status": Outcome.ERROR.value, "passed": False, "reason": run.redactor.text(reason)},
            steps=document["steps"], trajectory_path=str(path)))
        raise
    finally:
        if space is not None:
            await space.close()
    return _finish(run, attempt_id, task, outcome, verification, diff, path, document, iso_record)


def _finish(run: RunContext, attempt_id: str, task: AgentTask, outcome: LoopResult, verification: Verification,
            diff: str, path: Path, document: dict[str, Any], iso_record: dict[str, Any]) -> AgentResult:
    """Write the outcome into the trajectory and the store."""
    store = run.store
    result = AgentResult(run.run_id, attempt_id, task, outcome, verification, diff, str(path), iso_record)
    summary = result.as_json()
    append_trajectory(path, run.redactor.value({"type": "outcome", **{k: v for k, v in summary.items()
                                                                           if k != "statement"}}))
    tokens = result.tokens()
    store.finish_attempt(attempt_id, AttemptResult(
        status=Outcome(verification.status), end_reason=outcome.end_reason, verification=summary["verification"],
        diff=diff, steps=len(outcome.steps), failures=dict(outcome.failures),
        reasoning_preserved=[s.reasoning_preserved for s in outcome.steps], cost_usd=outcome.cost_usd,
        prompt_tokens=tokens["prompt_tokens"], completion_tokens=tokens["completion_tokens"],
        reasoning_tokens=tokens["reasoning_tokens"], trajectory_path=str(path)))
    return result
