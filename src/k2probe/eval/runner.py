"""Run an evaluation: every pending sample once — solve, score, record — each result stored as it lands.

The unit of work is a sample — (suite, task, route, epoch) → one SampleResult — run by a scheduler (eval/scheduler.py),
so `--resume` simply runs the samples still `pending`, and a sample that had a result is never sent to the model
again. The runner knows no suite kind: whatever the suite, it solves, then scores, then records."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from k2probe.core.records import linked
from k2probe.core.redact import redact
from k2probe.core.results import Outcome, Sample, SampleResult, Usage, Verdict
from k2probe.eval.plan import EvalPlan
from k2probe.eval.scheduler import LocalScheduler, Scheduler, Unit
from k2probe.eval.suite import Attempt, Identified, RouteModel, Suite, Unanswered, attempt_from
from k2probe.recording.recorder import StoreFailed

if TYPE_CHECKING:
    from concurrent.futures import Future

    from k2probe.client.transport import Transport
    from k2probe.contexts import RouteContext
    from k2probe.recording.store import Store
    from k2probe.sandbox.executor import Executor


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

    def add(self, outcome: Outcome, cost: float | None) -> None:
        self.done += 1
        self.passed += outcome is Outcome.PASSED
        self.failed += outcome is Outcome.FAILED
        self.errors += outcome is Outcome.ERROR
        self.cost_usd += cost or 0.0


OnSample = Callable[[Sample, Progress], None]  # a sample with its result, and the run's progress
PROOF_CHARS = 4000


def crashed(exc: BaseException, usage: Usage | None = None) -> SampleResult:
    """A sample that raised: `error` (k2probe's fault, not the model's), its redacted traceback kept as the proof."""
    reason = redact(f"k2probe failed on this sample: {type(exc).__name__}: {exc}")[:300]
    trace = redact("".join(traceback.format_exception(exc)))[-PROOF_CHARS:]
    return SampleResult.error(reason, trace, usage)


def _with(sample: Sample, result: SampleResult) -> Sample:
    """The sample as it is once `result` is recorded."""
    return sample.model_copy(update={"outcome": result.outcome, "reason": result.verdict.reason,
                                     "verdict": result.verdict, "usage": result.usage,
                                     "completion": result.completion, "started_at": result.started_at,
                                     "finished_at": result.finished_at})


class EvalRunner:
    """Runs a plan's pending samples of `suite` against the routes' contexts (or a samples file's attempts), recording
    their calls in the run `run_id`."""

    def __init__(self, plan: EvalPlan, store: Store, run_id: str, suite: Suite, samples: list[Identified],
                 executor: Executor, *, routes: dict[str, RouteContext] | None = None,
                 given: dict[str, list[Attempt]] | None = None, on_sample: OnSample | None = None,
                 timeout_s: float | None = None, scheduler: Scheduler | None = None,
                 ahead: Future[dict[tuple[str, int], Verdict]] | None = None) -> None:
        from k2probe.contexts import RunContext

        self.plan, self.store, self.run_id, self.suite, self.executor = plan, store, run_id, suite, executor
        self.samples = {s.id: s for s in samples}
        self.routes = routes or {}
        self.recording = RunContext(store, run_id, "eval")  # where every route's calls are recorded
        self.given = given  # a samples file's attempts, by sample id, one per epoch: scored, never solved
        self.kept: dict[str, tuple[Attempt, Usage]] = {}  # answers stored before a kill, by sample id
        self.ahead = ahead  # their verdicts, scored while the store was loading (by sample id and epoch)
        self.on_sample = on_sample
        self.timeout_s = timeout_s  # the whole run's bound (eval --timeout); None: none
        self.scheduler = scheduler or LocalScheduler(plan.concurrency, timeout_s, self._check_store)
        self.transports: dict[str, Transport] = {}

    async def run(self) -> Progress:
        rows = {s.id: s for s in self.store.samples(self.run_id) if s.outcome is Outcome.PENDING}
        # answers kept before their verdict (a run killed meanwhile): verified now, never asked for again
        self.kept = {s.id: (attempt, s.usage) for s in rows.values() if s.completion is not None
                     and (attempt := attempt_from(self.suite, s.completion)) is not None}
        units = [Unit(self.run_id, r.id, self.plan.suite, r.task_id, r.route, r.epoch) for r in rows.values()]
        progress = Progress(total=len(units))

        def sink(unit: Unit, result: SampleResult) -> None:
            self.store.finish_sample(unit.sample_id, result)  # the one place the runner writes a result
            progress.add(result.outcome, result.usage.cost_usd)
            if self.on_sample is not None:
                self.on_sample(_with(rows[unit.sample_id], result), progress)

        try:
            for name, routed in self.routes.items():
                self.transports[name] = routed.transport(self.recording.record)
            try:
                late = await self.scheduler.run(units, self.run_unit, sink)
            except BaseException:
                if self.store.recorder.failure is not None:
                    self.store.abandon_run(self.run_id, f"the store failed: {self.store.recorder.failure}")
                raise
            reason = f"timeout: the run's --timeout of {self.timeout_s or 0:g} s ended before this sample finished"
            for unit in late:  # a sample that got its result in its last moment keeps it (finish_sample: once)
                sink(unit, SampleResult.error(reason).model_copy(update={"finished_at": time.time()}))
                progress.timed_out += 1
        finally:
            for transport in self.transports.values():
                with contextlib.suppress(Exception):
                    await transport.aclose()
        return progress

    def _check_store(self) -> None:
        if self.store.recorder.failure is not None:
            self.store.flush()  # raises the store's one line

    async def run_unit(self, unit: Unit) -> SampleResult:
        """Solve → score one sample. An exception is this sample's `error` with its traceback (the others go on),
        unless --fail-fast; a failing store always stops the run."""
        with linked(sample_id=unit.sample_id):
            started = time.time()
            model: RouteModel | None = None
            try:
                sample = self.samples.get(unit.task_id)
                if sample is None:
                    result = SampleResult.error(f"task {unit.task_id} is no longer in suite {self.suite.name}")
                else:
                    if self.given is None and unit.sample_id not in self.kept:
                        model = RouteModel(self.routes[unit.route], self.recording, self.transports[unit.route],
                                           self.executor, self.plan.max_tokens)
                    result = await self._solve_and_score(sample, unit, model)
            except StoreFailed:
                raise
            except Exception as exc:
                if self.plan.fail_fast:
                    raise
                result = crashed(exc, model.usage if model is not None else None)
        return result.model_copy(update={"started_at": started, "finished_at": time.time()})

    async def _solve_and_score(self, sample: Identified, unit: Unit, model: RouteModel | None) -> SampleResult:
        epoch, kept = unit.epoch, self.kept.get(unit.sample_id)
        if model is None and kept is not None:
            attempt, usage = kept
        elif model is None:
            attempt, usage = (self.given or {})[sample.id][epoch], Usage()
        else:
            try:
                attempt = await self.suite.solve(sample, model)
            except Unanswered as exc:  # nothing of the model's to judge: `error`, never scored
                return SampleResult(verdict=Verdict(outcome=Outcome.ERROR, reason=str(exc)), usage=model.usage)
            usage = attempt.usage if attempt.usage is not None else model.usage
            if attempt.completion is not None and attempt_from(self.suite, attempt.completion) is not None:
                # paid for: kept (committed) before it is verified, so a kill now costs a verification, not a request
                await asyncio.to_thread(self.store.save_answer, unit.sample_id, attempt.completion, usage)
        scored = await asyncio.wrap_future(self.ahead) if self.ahead is not None and self.given is not None else {}
        verdict = scored.get((sample.id, epoch)) or await self.suite.score(sample, attempt, self.executor)
        return SampleResult(verdict=verdict, usage=usage, completion=attempt.completion)
