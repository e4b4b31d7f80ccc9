"""`k2probe eval`, between the CLI and the runner: open (or resume) the run, plan its samples, run them, compute the
metrics, finish the run. Everything it reports is read back from the store."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr

from k2probe.core.errors import UsageError
from k2probe.core.redact import Redactor
from k2probe.core.results import Model, Outcome, RunMetrics, RunStatus, Sample
from k2probe.eval.plan import EvalPlan, EvalTask, load_tasks, read_samples_file, task_id, units
from k2probe.eval.runner import EvalRunner, OnSample, Progress
from k2probe.sandbox.isolation import Isolation, isolation
from k2probe.sandbox.programs import ProgramVerdict, verify_programs
from k2probe.tasks.humaneval import SUITE as HUMANEVAL
from k2probe.tasks.humaneval import CodeProblem

if TYPE_CHECKING:
    from k2probe.recording.store import Store
    from k2probe.session import Session

SAMPLES_ROUTE = "samples"  # the route name of completions read from a --samples file


PROOF_CHARS = 800  # the tail of a sample's proof a --json document carries


class EvalSample(Model):
    """One sample as `eval --json` lists it: its unit, outcome, usage, the routes that answered, the proof's tail."""

    task_id: str
    route: str
    epoch: int
    outcome: Outcome
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    calls: int = 0
    retries: int = 0
    answered_by: list[str] = Field(default_factory=list)
    tokens: int = 0  # prompt + completion
    proof: str = ""

    @classmethod
    def of(cls, sample: Sample) -> EvalSample:
        u = sample.usage
        proof = sample.verdict.proof if sample.verdict is not None else ""
        return cls(task_id=sample.task_id, route=sample.route, epoch=sample.epoch, outcome=sample.outcome,
                   reason=sample.reason, prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                   reasoning_tokens=u.reasoning_tokens, cost_usd=u.cost_usd, latency_ms=u.latency_ms, calls=u.calls,
                   retries=u.retries, answered_by=sample.answered_by, tokens=u.tokens, proof=proof[-PROOF_CHARS:])


class EvalOutcome(Model):
    """What an evaluation measured; `model_dump(mode="json")` is the `eval --json` document (the CLI adds the
    thresholds it checked). The plan and the run's progress ride along for the caller, outside the document."""

    run_id: str
    suite: str
    routes: list[str]
    epochs: int
    isolation: str
    metrics: RunMetrics
    samples: list[EvalSample]
    thresholds: dict[str, float] = Field(default_factory=dict)
    broken_thresholds: list[str] = Field(default_factory=list)
    _plan: EvalPlan = PrivateAttr()
    _progress: Progress = PrivateAttr()
    _records: list[Sample] = PrivateAttr(default_factory=list)

    @classmethod
    def of(cls, run_id: str, plan: EvalPlan, routes: list[str], metrics: RunMetrics, samples: list[Sample],
           progress: Progress, isolation: str) -> EvalOutcome:
        outcome = cls(run_id=run_id, suite=plan.suite, routes=routes, epochs=plan.epochs, isolation=isolation,
                      metrics=metrics, samples=[EvalSample.of(s) for s in samples])
        outcome._plan, outcome._progress, outcome._records = plan, progress, samples
        return outcome

    @property
    def plan(self) -> EvalPlan:
        return self._plan

    @property
    def progress(self) -> Progress:
        return self._progress

    @property
    def records(self) -> list[Sample]:
        """The samples as the store keeps them (whole verdicts, usage, the completion judged)."""
        return self._records


def evaluate(plan: EvalPlan, *, resume: str | None = None, on_start: Any = None,
             on_sample: OnSample | None = None, timeout_s: float | None = None) -> EvalOutcome:
    """Run `plan` (or the plan of the run `resume` names) to its end, or for `timeout_s` at most (the samples still
    running then end as `error`, the run `timed_out`). With a samples file and no model to call, the sandbox starts
    verifying at once, while the store (SQLAlchemy) is still loading."""
    ahead: Future[dict[str, ProgramVerdict]] | None = None
    pool = ThreadPoolExecutor(max_workers=1)
    if resume is None and plan.samples_file is not None:
        tasks, completions = _given(plan)
        iso = isolation(plan.sandbox)
        ahead = pool.submit(_verify_given, tasks, completions, iso)
    from k2probe.recording.store import Store

    store = Store(redactor=Redactor())
    try:
        with contextlib.ExitStack() as held:
            if resume is not None:
                run = store.find_run(resume)
                if run.command != "eval":
                    raise UsageError(f"run {run.id[:8]} is a `{run.command}` run, not an evaluation",
                                     fix="resume a run listed by `k2probe runs` as eval")
                plan = EvalPlan.from_config(run.config)
                run_id = run.id
                held.enter_context(store.lease(run_id))  # refused while another process works on the run
            else:
                run_id = ""
            return _evaluate(plan, store, run_id, on_start, on_sample, ahead, timeout_s)
    finally:
        pool.shutdown(wait=True)
        store.dispose()


def _given(plan: EvalPlan) -> tuple[list[EvalTask], dict[str, str]]:
    """The tasks a samples file has completions for, and those completions."""
    if plan.suite != HUMANEVAL:
        raise UsageError("--samples verifies given completions of HumanEval problems", fix="use it with: eval humaneval")
    completions = read_samples_file(str(plan.samples_file))
    tasks = [t for t in load_tasks(plan) if task_id(t) in completions]
    if not tasks:
        raise UsageError(f"--samples {plan.samples_file}: no completion for any task of the plan",
                         fix='task ids look like "HumanEval/0"')
    return tasks, completions


def _verify_given(tasks: list[EvalTask], completions: dict[str, str], iso: Isolation) -> dict[str, ProgramVerdict]:
    """Each given completion judged in a sandbox of its own (nothing shared with another sample)."""
    return verify_programs({t.task_id: t.program(completions[t.task_id]) for t in tasks
                            if isinstance(t, CodeProblem)}, iso=iso)


def _evaluate(plan: EvalPlan, store: Store, run_id: str, on_start: Any, on_sample: OnSample | None,
              ahead: Future[dict[str, ProgramVerdict]] | None, timeout_s: float | None = None) -> EvalOutcome:
    from k2probe.eval import metrics

    tasks: list[EvalTask]
    completions: dict[str, str] | None = None
    if plan.samples_file is not None:
        tasks, completions = _given(plan)
    else:
        tasks = load_tasks(plan)
    iso = isolation(plan.sandbox)
    resumed = bool(run_id)
    with contextlib.ExitStack() as stack:
        sessions: dict[str, Session] = {}
        if completions is None:
            from k2probe.session import open_session

            for name in plan.routes:
                if not run_id:  # the first route's session opens the run everyone joins
                    run_id = store.start_run("eval", name, plan.as_config())
                session = stack.enter_context(open_session("eval", name, join=(store, run_id)))
                if session.route.name in sessions:
                    raise UsageError(f"route {session.route.name!r} given twice", fix="name each route once")
                sessions[session.route.name] = session
            routes = list(sessions)
        else:
            routes = [SAMPLES_ROUTE]
            run_id = run_id or store.start_run("eval", SAMPLES_ROUTE, plan.as_config())
        if not resumed:  # the run's own process holds it like a resume does: a resume meanwhile is refused
            stack.enter_context(store.lease(run_id))
        store.plan_samples(run_id, plan.suite, units(tasks, routes, plan.epochs))
        if on_start is not None:
            on_start(run_id, sessions, sum(1 for s in store.samples(run_id) if s.outcome is Outcome.PENDING))
        runner = EvalRunner(plan, store, run_id, tasks, iso, sessions=sessions, completions=completions,
                            verdicts_ahead=ahead, on_sample=on_sample, timeout_s=timeout_s)
        status = RunStatus.INTERRUPTED
        try:
            progress = asyncio.run(runner.run())
            status = RunStatus.TIMED_OUT if progress.timed_out else RunStatus.FINISHED
        finally:
            samples = store.samples(run_id)  # read once: the metrics and the document share them
            figures = metrics.compute(store, run_id, plan.epochs, samples=samples)
            emulated = any(s.route.emulated for s in sessions.values())
            store.finish_run(run_id, status, {"samples": figures.overall.samples.model_dump(),
                                              "routes": list(sessions) or [SAMPLES_ROUTE], "emulated": emulated})
    return EvalOutcome.of(run_id, plan, routes, figures, samples, progress, iso.line())


def check_samples_path(path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"--samples {path} is not a readable file", fix="give the path of a JSONL samples file")
