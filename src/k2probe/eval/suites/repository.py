"""Repository suites — the shipped ones (`basic`) and a user's folder with a suite.toml: each sample is a task the
agent works on in a private workspace, verified by the task's hidden tests in the sandbox. The agent run verifies its
own final state (agent/runner.py), so scoring reads that verdict; a route that never answered is `error`, unverified.
The emulator plays a shipped task with a scripted trajectory built from its solution."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k2probe.core.results import Outcome, Usage, Verdict
from k2probe.eval.suite import Attempt, BaseSuite, Played, PlayRequest, RouteModel
from k2probe.tasks.shipped import Task, is_user_suite, load_suite, suite_names

if TYPE_CHECKING:
    from k2probe.agent.runner import AgentResult
    from k2probe.sandbox.executor import Executor


class RepositorySuite(BaseSuite):
    """The tasks of a shipped suite (by name) or of a user's suite folder (by its absolute path)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.shipped = ref in suite_names() and not is_user_suite(ref)
        self.name = load_suite(ref)[0].suite if not self.shipped else ref

    def samples(self) -> list[Task]:
        return list(load_suite(self.ref))

    async def solve(self, sample: Task, model: RouteModel) -> Attempt:
        from k2probe.agent.loop import AgentLimits
        from k2probe.agent.runner import AgentTask, run_agent

        result = await run_agent(model.routed, model.run, AgentTask.from_suite(sample), AgentLimits(),
                                 executor=model.executor)
        return Attempt(result, usage=_usage(result))

    async def score(self, sample: Task, attempt: Attempt, executor: Executor) -> Verdict:
        from k2probe.eval.pytestproof import proof_of

        result: AgentResult = attempt.answer
        v = result.verification
        proof, failing = proof_of(v.output) if v.status == Outcome.FAILED.value else (v.output, [])
        return Verdict(outcome=Outcome(v.status), reason=v.reason, proof=proof,
                       details={"command": v.command, "duration_ms": v.duration_ms, "guard": v.guard,
                                "tampering": v.tampering, "passed": v.passed, "attempt_id": result.attempt_id,
                                "failed_tests": [t.as_json() for t in failing],
                                **({"node": result.isolation["node"]} if "node" in result.isolation else {})})

    def playable(self) -> bool:
        return self.shipped  # the scripted trajectories are built from the shipped tasks' solutions

    def play(self, request: PlayRequest) -> Played | None:
        if not self.shipped or not request.tools or request.tool_choice == "none":
            return None
        text = request.user_text()
        task = next((t for t in load_suite(self.ref) if text is not None and t.statement in text), None)
        if task is None:
            return None
        from k2probe.eval.suites.scripted import scripted_answer

        return scripted_answer(task, request.messages, request.seed, request.slip_rate)


def _usage(result: AgentResult) -> Usage:
    steps = result.loop.steps
    return Usage(calls=len(steps), prompt_tokens=sum(s.prompt_tokens for s in steps),
                 completion_tokens=sum(s.completion_tokens for s in steps),
                 reasoning_tokens=sum(s.reasoning_tokens for s in steps), cost_usd=result.loop.cost_usd,
                 latency_ms=sum(s.latency_ms or 0.0 for s in steps))
