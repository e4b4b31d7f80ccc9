"""`k2probe eval`, between the CLI and the runner: find the suite, open (or resume) the run, plan its samples, run them,
compute the metrics (the suite's own among them), finish the run. Everything it reports is read back from the store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr

from k2probe.core.errors import UsageError
from k2probe.core.redact import Redactor, redact
from k2probe.core.results import Model, Outcome, Run, RunMetrics, RunStatus, Sample, Verdict
from k2probe.eval.plan import EvalPlan, units
from k2probe.eval.runner import EvalRunner, OnSample, Progress
from k2probe.eval.scheduler import Scheduler
from k2probe.eval.suite import (
    UNPLAYED,
    Attempt,
    Identified,
    Suite,
    get_suite,
    given_of,
    metrics_of,
    plays_on_emulator,
    select,
)
from k2probe.sandbox.executor import executor_for, executor_of
from k2probe.sandbox.isolation import isolation

if TYPE_CHECKING:
    from k2probe.contexts import RouteContext, Serve
    from k2probe.recording.store import Store
    from k2probe.sandbox.executor import Executor

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
             on_sample: OnSample | None = None, timeout_s: float | None = None,
             suite: Suite | None = None, scheduler: Scheduler | None = None, serve: Serve | None = None
             ) -> EvalOutcome:
    """Run `plan` (or the plan of the run `resume` names) to its end, or for `timeout_s` at most (the samples still
    running then end as `error`, the run `timed_out`). `suite` is the suite object when the caller has it (the API's
    `evaluate(MySuite())`); otherwise the plan's ref finds it (eval/suite.py). `scheduler` runs the sample units
    (default: this event loop, eval/scheduler.py's LocalScheduler); `serve` serves its emulated routes
    (api.serve_emulator)."""
    pool = ThreadPoolExecutor(max_workers=1)
    ahead: Future[dict[tuple[str, int], Verdict]] | None = None
    chosen = None
    if resume is None and plan.samples_file is not None:  # nothing to ask: scoring starts while the store loads
        suite = suite if suite is not None and suite.name == plan.suite else get_suite(plan.suite)
        chosen = samples, given = _samples(plan, suite)
        if plan.executor == "local":  # (a cluster's executor is made once, with its probe, by the run itself)
            ahead = pool.submit(asyncio.run, _score_all(suite, samples, given or {},
                                                        executor_for(isolation(plan.sandbox))))
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
            if suite is None or suite.name != plan.suite:
                suite = get_suite(plan.suite)
            return _evaluate(plan, suite, store, run_id, on_start, on_sample, timeout_s, scheduler, ahead, serve,
                             chosen)
    finally:
        pool.shutdown(wait=True)
        store.dispose()


async def _score_all(suite: Suite, samples: list[Identified], given: dict[str, list[Attempt]],
                     executor: Executor) -> dict[tuple[str, int], Verdict]:
    """Every given attempt scored (each in a sandbox of its own), by (sample id, epoch); one that raises is left out
    (the runner scores it again, where its exception becomes that sample's `error`)."""
    async def one(sample: Identified, epoch: int) -> tuple[tuple[str, int], Verdict | BaseException]:
        try:
            return (sample.id, epoch), await suite.score(sample, given[sample.id][epoch], executor)
        except Exception as exc:
            return (sample.id, epoch), exc

    scored = await asyncio.gather(*(one(s, e) for s in samples for e in range(len(given[s.id]))))
    return {key: verdict for key, verdict in scored if isinstance(verdict, Verdict)}


def _samples(plan: EvalPlan, suite: Suite) -> tuple[list[Identified], dict[str, list[Attempt]] | None]:
    """The plan's samples of the suite, and a samples file's attempts when there is one (only the samples it has; a
    task id the suite does not have is named, never skipped). Several attempts for one task are its epochs: the plan
    takes as many epochs as the most any task has."""
    chosen = select(suite, plan.tasks, plan.limit)
    if plan.samples_file is None:
        return chosen, None
    given = given_of(suite, plan.samples_file)
    known = {s.id for s in suite.samples()}
    unknown = [task for task in given if task not in known]
    if unknown:
        raise UsageError(f"--samples {plan.samples_file}: {len(unknown)} task id(s) not in suite {suite.name}: "
                         f"{', '.join(repr(t) for t in unknown[:5])}", fix="give completions of the suite's tasks")
    plan.epochs = max((len(v) for v in given.values()), default=1)
    chosen = [s for s in chosen if s.id in given]
    if not chosen:
        example = next(iter(suite.samples())).id
        raise UsageError(f"--samples {plan.samples_file}: no completion for any task of the plan",
                         fix=f"task ids look like {example!r}")
    return chosen, given


def _evaluate(plan: EvalPlan, suite: Suite, store: Store, run_id: str, on_start: Any, on_sample: OnSample | None,
              timeout_s: float | None = None, scheduler: Scheduler | None = None,
              ahead: Future[dict[tuple[str, int], Verdict]] | None = None, serve: Serve | None = None,
              chosen: tuple[list[Identified], dict[str, list[Attempt]] | None] | None = None) -> EvalOutcome:
    from k2probe.eval import metrics

    samples, given = chosen or _samples(plan, suite)  # a samples file is read once: `evaluate` may have read it
    executor = executor_of(plan.sandbox, plan.executor, plan.ray_address)
    resumed = bool(run_id)
    with contextlib.ExitStack() as stack:
        sessions: dict[str, RouteContext] = {}  # each route's context; all of them recorded in this one run
        if given is None:
            from k2probe.contexts import open_route

            for name in plan.routes:
                session = stack.enter_context(open_route(name, serve=serve))
                if session.route.name in sessions:
                    raise UsageError(f"route {session.route.name!r} given twice", fix="name each route once")
                sessions[session.route.name] = session
            routes = list(sessions)
            if not plays_on_emulator(suite):  # said once per emulated route, with the other notices
                for routed in sessions.values():
                    if routed.route.emulated:
                        routed.notices.append(UNPLAYED.format(suite=suite.name))
            asyncio.run(_prove(list(sessions.values()), timeout_s))  # a misconfigured route stops here: exit 2
            from k2probe.contexts import route_snapshot

            run_id = run_id or store.start_run("eval", routes[0], {
                **plan.as_config(), "routes": {name: route_snapshot(routed) for name, routed in sessions.items()}})
        else:
            routes = [SAMPLES_ROUTE]
            run_id = run_id or store.start_run("eval", SAMPLES_ROUTE, plan.as_config())
        if not resumed:  # the run's own process holds it like a resume does: a resume meanwhile is refused
            stack.enter_context(store.lease(run_id))
        planned = units([s.id for s in samples], routes, plan.epochs) if given is None else \
            [(s.id, SAMPLES_ROUTE, epoch) for s in samples for epoch in range(len(given[s.id]))]
        store.plan_samples(run_id, suite.name, planned)
        if on_start is not None:
            on_start(run_id, sessions, sum(1 for s in store.samples(run_id) if s.outcome is Outcome.PENDING))
        runner = EvalRunner(plan, store, run_id, suite, samples, executor, routes=sessions, given=given,
                            on_sample=on_sample, timeout_s=timeout_s, scheduler=scheduler, ahead=ahead)
        status = RunStatus.INTERRUPTED
        try:
            progress = asyncio.run(runner.run())
            status = RunStatus.TIMED_OUT if progress.timed_out else RunStatus.FINISHED
        finally:
            records = store.samples(run_id)  # read once: the metrics and the document share them
            figures = metrics.compute(store, run_id, plan.epochs, extra=suite_metrics(suite), samples=records)
            emulated = any(s.route.emulated for s in sessions.values())
            cost = figures.overall.cost_per_accepted_usd.total_cost_usd
            store.finish_run(run_id, status, {"suite": suite.name, "samples": figures.overall.samples.model_dump(),
                                              "routes": list(sessions) or [SAMPLES_ROUTE], "emulated": emulated,
                                              "cost_usd": cost})  # "unknown", or None: no request made
    return EvalOutcome.of(run_id, plan, routes, figures, records, progress, executor.isolation.line())


async def _prove(routes: list[RouteContext], timeout_s: float | None) -> None:
    """Each route's key, base URL and model proven by one cheap request, side by side (RouteContext.prove), within
    the run's --timeout when it is shorter than the check's own bound."""
    within = min(30.0, timeout_s) if timeout_s else 30.0
    await asyncio.gather(*(routed.prove("eval", within) for routed in routes))


def suite_metrics(suite: Suite) -> Callable[[list[Sample]], dict[str, Any]]:
    """What the suite adds to one route's metrics, from that route's samples. A suite's metrics that raise are said in
    one line there: every sample is recorded, and the run (or its report) still finishes."""
    def of(group: list[Sample]) -> dict[str, Any]:
        try:
            return metrics_of(suite, group)
        except Exception as exc:
            return {"metrics_error": redact(f"suite {suite.name!r}: metrics raised {type(exc).__name__}: {exc}")[:300]}

    return of


def suite_metrics_of_run(ref: str) -> Callable[[list[Sample]], dict[str, Any]] | None:
    """The suite metrics of a stored run's suite (for compare and report); None when its suite cannot be found now
    (a user's file since moved): its figures are then left out, the rest is the same."""
    try:
        return suite_metrics(get_suite(ref))
    except Exception:
        return None


def metrics_of_run(store: Store, run: Run, samples: list[Sample] | None = None) -> RunMetrics:
    """A stored evaluation's metrics, per route and overall: what `eval --json`, `compare`, `report` and `view` show."""
    from k2probe.eval import metrics as eval_metrics

    plan = run.config.get("eval") or {}
    if samples is None:  # metrics read verdicts, usage and reviews, never the answers themselves
        samples = store.samples(run.id, completions=False)
    return eval_metrics.compute(store, run.id, int(plan.get("epochs") or 1), samples=samples,
                                extra=suite_metrics_of_run(str(plan.get("suite") or "")))


def check_samples_path(path: str | None) -> None:
    if path is not None:
        from k2probe.core.files import require_file

        require_file(path, "--samples")
