"""Run an evaluation: every pending sample once, concurrently on one event loop, each result stored as it lands.

The unit of work is a sample — (task, route, epoch) → one result — so `--resume` simply runs the samples still
`pending`, and a sample that had a result is never sent to the model again."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from k2probe.core.noanswer import unanswered
from k2probe.core.records import linked
from k2probe.core.redact import redact
from k2probe.core.results import Outcome as SampleOutcome
from k2probe.core.results import Sample, SampleResult, Usage, Verdict
from k2probe.core.sanitize import sanitise
from k2probe.eval.plan import EvalPlan, EvalTask, task_id
from k2probe.eval.verifier import BatchVerifier
from k2probe.recording.recorder import StoreFailed
from k2probe.sandbox.isolation import Isolation
from k2probe.tasks.humaneval import CodeProblem, completion_of
from k2probe.tasks.toolcalls import ToolCase

if TYPE_CHECKING:  # the request path (the openai SDK) loads only when a model is called: --samples goes without it
    from concurrent.futures import Future

    from k2probe.client.transport import Outcome, Transport
    from k2probe.recording.store import Store
    from k2probe.sandbox.programs import ProgramVerdict
    from k2probe.session import Session


@dataclass
class Progress:
    """What the live view shows; updated after every sample."""

    total: int
    done: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    timed_out: int = 0  # samples the run's --timeout ended (each an `error`)

    def add(self, outcome: str, cost: float | None) -> None:
        self.done += 1
        self.passed += outcome == "passed"
        self.failed += outcome == "failed"
        self.errors += outcome == "error"
        self.cost_usd += cost or 0.0


OnSample = Callable[[Sample, Progress], None]  # a sample with its result, and the run's progress
PROOF_CHARS = 4000


def crashed(exc: Exception) -> dict[str, Any]:
    """A sample that raised: `error` (k2probe's fault, not the model's), its redacted traceback kept as the proof."""
    reason = redact(f"k2probe failed on this sample: {type(exc).__name__}: {exc}")[:300]
    trace = redact("".join(traceback.format_exception(exc)))[-PROOF_CHARS:]
    return {"outcome": "error", "reason": reason, "verification": {"status": "error", "reason": reason, "output": trace}}


def _result(data: dict[str, Any]) -> SampleResult:
    """One sample's result as the typed result the store takes (the verdict from its verification, if any)."""
    verdict = Verdict.from_row(data.get("verification"), data["outcome"], data.get("reason"))
    usage = Usage(**{name: data[name] for name in Usage.model_fields if name in data})
    return SampleResult(verdict=verdict, usage=usage, completion=data.get("completion"),
                        started_at=data.get("started_at"), finished_at=data.get("finished_at"))


def _with(sample: Sample, result: SampleResult) -> Sample:
    """The sample as it is once `result` is recorded."""
    return sample.model_copy(update={"outcome": result.outcome, "reason": result.verdict.reason,
                                     "verdict": result.verdict, "usage": result.usage,
                                     "completion": result.completion, "started_at": result.started_at,
                                     "finished_at": result.finished_at})


async def _cancel(tasks: set[asyncio.Future[None]]) -> None:
    """Cancel these samples and wait until each has stopped (its calls recorded as cancelled), whatever it raised."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _usage(outcome: Outcome) -> dict[str, Any]:
    calls = outcome.calls
    costs = [c.cost_usd for c in calls if c.prompt_tokens or c.completion_tokens or c.price_source]  # priced, or not
    return {"calls": len(calls), "retries": outcome.retries,
            "prompt_tokens": sum(c.prompt_tokens for c in calls),
            "completion_tokens": sum(c.completion_tokens for c in calls),
            "reasoning_tokens": sum(c.reasoning_tokens for c in calls),
            "cached_tokens": sum(c.cached_tokens for c in calls),
            "cost_usd": None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
            "latency_ms": sum(c.latency_ms or 0.0 for c in calls)}


class EvalRunner:
    """Runs a plan's pending samples against the routes' sessions (or a samples file's completions)."""

    def __init__(self, plan: EvalPlan, store: Store, run_id: str, tasks: list[EvalTask], iso: Isolation, *,
                 sessions: dict[str, Session] | None = None, completions: dict[str, str] | None = None,
                 verdicts_ahead: Future[dict[str, ProgramVerdict]] | None = None,
                 on_sample: OnSample | None = None, timeout_s: float | None = None) -> None:
        self.plan, self.store, self.run_id, self.iso = plan, store, run_id, iso
        self.tasks = {task_id(t): t for t in tasks}
        self.sessions = sessions or {}
        self.completions = completions
        self.verdicts_ahead = verdicts_ahead  # a samples file's verdicts, verified while the store was opening
        self.on_sample = on_sample
        self.timeout_s = timeout_s  # the whole run's bound (eval --timeout); None: none
        self.verifier = BatchVerifier(iso)
        self.transports: dict[str, Transport] = {}
        self.gate = asyncio.Semaphore(plan.concurrency)

    async def run(self) -> Progress:
        pending = [s for s in self.store.samples(self.run_id) if s.outcome is SampleOutcome.PENDING]
        progress = Progress(total=len(pending))
        try:
            for name, session in self.sessions.items():
                self.transports[name] = session.transport()

            async def one(sample: Sample) -> None:
                with linked(sample_id=sample.id):
                    started = time.time()
                    try:
                        result = await self._sample(sample)
                    except StoreFailed:
                        raise
                    except Exception as exc:  # this sample alone is `error`; the others go on (unless --fail-fast)
                        if self.plan.fail_fast:
                            raise
                        result = crashed(exc)
                result.update(started_at=started, finished_at=time.time())
                typed = _result(result)
                self.store.finish_sample(sample.id, typed)
                progress.add(typed.outcome, typed.usage.cost_usd)
                if self.on_sample is not None:
                    self.on_sample(_with(sample, typed), progress)

            late = await self._until_done({asyncio.ensure_future(one(s)): s for s in pending})
            reason = f"timeout: the run's --timeout of {self.timeout_s or 0:g} s ended before this sample finished"
            for sample in late:  # a sample that got its result in its last moment keeps it (finish_sample: once)
                late_result = SampleResult(verdict=Verdict(outcome=SampleOutcome.ERROR, reason=reason),
                                           finished_at=time.time())
                self.store.finish_sample(sample.id, late_result)
                progress.add(SampleOutcome.ERROR, None)
                progress.timed_out += 1
                if self.on_sample is not None:
                    self.on_sample(_with(sample, late_result), progress)
        finally:
            await self.verifier.aclose()
            for transport in self.transports.values():
                with contextlib.suppress(Exception):
                    await transport.aclose()
        return progress

    async def _until_done(self, running: dict[asyncio.Future[None], Sample]) -> list[Sample]:
        """Wait for every sample, at most `timeout_s`; the samples still running then are cancelled and returned.
        A sample that raised (the store failing under it, or anything with --fail-fast) or a store that stopped
        accepting records stops the run at once: every other sample is cancelled, and the store's one line (or the
        sample's exception) is raised."""
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s
        waiting = set(running)
        try:
            while waiting:
                left = 1.0 if deadline is None else min(1.0, deadline - loop.time())
                if left <= 0:
                    break
                done, waiting = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if self.store.recorder.failure is not None:
                    self.store.flush()  # raises the store's one line
        except BaseException:
            await _cancel(waiting)
            if self.store.recorder.failure is not None:
                self.store.abandon_run(self.run_id, f"the store failed: {self.store.recorder.failure}")
            raise
        await _cancel(waiting)
        return [running[task] for task in running if task in waiting]

    async def _sample(self, sample: Sample) -> dict[str, Any]:
        task = self.tasks.get(sample.task_id)
        if task is None:
            return {"outcome": "error", "reason": f"task {sample.task_id} is no longer in suite {self.plan.suite}"}
        if isinstance(task, CodeProblem):
            return await self._code(sample, task)
        if isinstance(task, ToolCase):
            return await self._toolcall(sample, task)
        return await self._agent(sample, task)

    async def _toolcall(self, sample: Sample, case: ToolCase) -> dict[str, Any]:
        """One request offering the case's tools; the answer judged against the label and the tools' schemas (data,
        not code: nothing of it runs)."""
        from k2probe.eval.toolscore import judge_tool_answer

        session = self.sessions[sample.route]
        body = sanitise({"model": session.route.model, "max_tokens": self.plan.max_tokens, "tool_choice": "auto",
                         "tools": case.tool_schemas(), "messages": [{"role": "user", "content": case.prompt}]},
                        session.profile).body
        async with self.gate:
            outcome = await self.transports[sample.route].chat(body, purpose=f"eval {case.task_id}")
        usage = _usage(outcome)
        if (reason := unanswered(outcome.failure, len(outcome.calls))) is not None:
            return {**usage, "outcome": "error", "reason": reason}
        return {**usage, **judge_tool_answer(case, outcome.message, outcome.finish_reason)}

    async def _code(self, sample: Sample, problem: CodeProblem) -> dict[str, Any]:
        usage: dict[str, Any] = {}
        if self.completions is not None:
            completion = self.completions[problem.task_id]
        else:
            session = self.sessions[sample.route]
            body = sanitise({"model": session.route.model, "max_tokens": self.plan.max_tokens,
                             "messages": [{"role": "user", "content": problem.request_text()}]}, session.profile).body
            async with self.gate:
                outcome = await self.transports[sample.route].chat(body, purpose=f"eval {problem.task_id}")
            usage = _usage(outcome)
            if (reason := unanswered(outcome.failure, len(outcome.calls))) is not None:  # nothing to judge
                return {**usage, "outcome": "error", "reason": reason}
            completion = completion_of(problem, outcome.content)
        ahead = await asyncio.wrap_future(self.verdicts_ahead) if self.verdicts_ahead is not None else {}
        verdict = ahead.get(problem.task_id) or await self.verifier.verify(sample.id, problem.program(completion))
        return {**usage, "outcome": verdict.status, "reason": verdict.reason, "completion": completion,
                "verification": {"status": verdict.status, "reason": verdict.reason, "output": verdict.output[-2000:]}}

    async def _agent(self, sample: Sample, task: Any) -> dict[str, Any]:
        from k2probe.agent.loop import AgentLimits
        from k2probe.agent.runner import AgentTask, run_agent

        session = self.sessions[sample.route]
        async with self.gate:
            result = await run_agent(session, AgentTask.from_suite(task), AgentLimits(), iso=self.iso)
        data = result.as_json()
        verification = data["verification"]  # a route that never answered: `error`, unverified (core/noanswer.py)
        return {"outcome": verification["status"], "reason": verification.get("reason"),
                "verification": verification, "calls": data["steps"],
                "prompt_tokens": data["prompt_tokens"], "completion_tokens": data["completion_tokens"],
                "reasoning_tokens": data["reasoning_tokens"], "cost_usd": data["cost_usd"],
                "latency_ms": sum(s.latency_ms or 0.0 for s in result.loop.steps)}
