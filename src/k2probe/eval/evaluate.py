"""`k2probe eval`, between the CLI and the runner: find the suite, open (or resume) the run, plan its samples, run them,
compute the metrics (the suite's own among them), finish the run. Everything it reports is read back from the store."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2probe.core.errors import UsageError
from k2probe.core.redact import Redactor, redact
from k2probe.core.results import Outcome, Sample, Usage, Verdict
from k2probe.eval.plan import EvalPlan, units
from k2probe.eval.runner import EvalRunner, OnSample, Progress
from k2probe.eval.scheduler import Scheduler
from k2probe.eval.suite import Attempt, Identified, Suite, get_suite, given_of, metrics_of, select
from k2probe.sandbox.executor import executor_for
from k2probe.sandbox.isolation import isolation

if TYPE_CHECKING:
    from k2probe.contexts import RouteContext, Serve
    from k2probe.recording.store import Store
    from k2probe.sandbox.executor import Executor

SAMPLES_ROUTE = "samples"  # the route name of completions read from a --samples file


@dataclass
class EvalOutcome:
    run_id: str
    plan: EvalPlan
    routes: list[str]
    metrics: dict[str, dict[str, Any]]
    samples: list[dict[str, Any]]
    progress: Progress
    isolation: str

    def as_json(self) -> dict[str, Any]:
        keep = ("task_id", "route", "epoch", "outcome", "reason", "prompt_tokens", "completion_tokens",
                "reasoning_tokens", "cost_usd", "latency_ms", "calls", "retries", "answered_by")
        return {"run_id": self.run_id, "suite": self.plan.suite, "routes": self.routes, "epochs": self.plan.epochs,
                "isolation": self.isolation, "metrics": self.metrics,
                "samples": [{**{k: s.get(k) for k in keep},
                             "tokens": (s.get("prompt_tokens") or 0) + (s.get("completion_tokens") or 0),
                             "proof": ((s.get("verification") or {}).get("output") or "")[-800:]}
                            for s in self.samples]}


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
    ahead: Future[dict[str, Verdict]] | None = None
    if resume is None and plan.samples_file is not None:  # nothing to ask: scoring starts while the store loads
        suite = suite if suite is not None and suite.name == plan.suite else get_suite(plan.suite)
        samples, given = _samples(plan, suite)
        ahead = pool.submit(asyncio.run, _score_all(suite, samples, given or {}, executor_for(isolation(plan.sandbox))))
    from k2probe.recording.store import Store

    store = Store(redactor=Redactor())
    try:
        with contextlib.ExitStack() as held:
            if resume is not None:
                run = store.find_run(resume)
                if run["command"] != "eval":
                    raise UsageError(f"run {run['id'][:8]} is a `{run['command']}` run, not an evaluation",
                                     fix="resume a run listed by `k2probe runs` as eval")
                plan = EvalPlan.from_config(run["config"])
                run_id = run["id"]
                held.enter_context(store.lease(run_id))  # refused while another process works on the run
            else:
                run_id = ""
            if suite is None or suite.name != plan.suite:
                suite = get_suite(plan.suite)
            return _evaluate(plan, suite, store, run_id, on_start, on_sample, timeout_s, scheduler, ahead, serve)
    finally:
        pool.shutdown(wait=True)
        store.dispose()


async def _score_all(suite: Suite, samples: list[Identified], given: dict[str, Attempt],
                     executor: Executor) -> dict[str, Verdict]:
    """Every given attempt scored (each in a sandbox of its own), by sample id; one that raises is left out (the
    runner scores it again, where its exception becomes that sample's `error`)."""
    async def one(sample: Identified) -> tuple[str, Verdict | BaseException]:
        try:
            return sample.id, await suite.score(sample, given[sample.id], executor)
        except Exception as exc:
            return sample.id, exc

    scored = await asyncio.gather(*(one(s) for s in samples))
    return {key: verdict for key, verdict in scored if isinstance(verdict, Verdict)}


def _samples(plan: EvalPlan, suite: Suite) -> tuple[list[Identified], dict[str, Attempt] | None]:
    """The plan's samples of the suite, and a samples file's attempts when there is one (only the samples it has)."""
    chosen = select(suite, plan.tasks, plan.limit)
    if plan.samples_file is None:
        return chosen, None
    given = given_of(suite, plan.samples_file)
    chosen = [s for s in chosen if s.id in given]
    if not chosen:
        example = next(iter(suite.samples())).id
        raise UsageError(f"--samples {plan.samples_file}: no completion for any task of the plan",
                         fix=f"task ids look like {example!r}")
    return chosen, given


def _evaluate(plan: EvalPlan, suite: Suite, store: Store, run_id: str, on_start: Any, on_sample: OnSample | None,
              timeout_s: float | None = None, scheduler: Scheduler | None = None,
              ahead: Future[dict[str, Verdict]] | None = None, serve: Serve | None = None) -> EvalOutcome:
    from k2probe.eval import metrics

    samples, given = _samples(plan, suite)
    executor = executor_for(isolation(plan.sandbox))
    resumed = bool(run_id)
    with contextlib.ExitStack() as stack:
        sessions: dict[str, RouteContext] = {}  # each route's context; all of them recorded in this one run
        if given is None:
            from k2probe.contexts import open_route

            for name in plan.routes:
                if not run_id:  # the run is started under the first route's name
                    run_id = store.start_run("eval", name, plan.as_config())
                session = stack.enter_context(open_route(name, serve=serve))
                if session.route.name in sessions:
                    raise UsageError(f"route {session.route.name!r} given twice", fix="name each route once")
                sessions[session.route.name] = session
            routes = list(sessions)
        else:
            routes = [SAMPLES_ROUTE]
            run_id = run_id or store.start_run("eval", SAMPLES_ROUTE, plan.as_config())
        if not resumed:  # the run's own process holds it like a resume does: a resume meanwhile is refused
            stack.enter_context(store.lease(run_id))
        store.plan_samples(run_id, suite.name, units([s.id for s in samples], routes, plan.epochs))
        if on_start is not None:
            on_start(run_id, sessions, sum(1 for s in store.samples(run_id) if s["outcome"] == "pending"))
        runner = EvalRunner(plan, store, run_id, suite, samples, executor, routes=sessions, given=given,
                            on_sample=on_sample, timeout_s=timeout_s, scheduler=scheduler, ahead=ahead)
        status = "interrupted"
        try:
            progress = asyncio.run(runner.run())
            status = "timed_out" if progress.timed_out else "finished"
        finally:
            figures = metrics.compute(store, run_id, plan.epochs, extra=lambda group: _suite_metrics(suite, group))
            emulated = any(s.route.emulated for s in sessions.values())
            store.finish_run(run_id, status, {"samples": figures.get(metrics.OVERALL, {}).get("samples", {}),
                                              "routes": list(sessions) or [SAMPLES_ROUTE], "emulated": emulated})
    return EvalOutcome(run_id, plan, routes, figures, metrics.samples(store, run_id), progress, executor.isolation.line())


def _suite_metrics(suite: Suite, group: list[dict[str, Any]]) -> dict[str, Any]:
    """What the suite adds to one route's metrics, from that route's samples (the store's rows, typed). A suite's
    metrics that raise are said in one line there: every sample is recorded, and the run still finishes."""
    try:
        return metrics_of(suite, [_typed(row) for row in group])
    except Exception as exc:
        return {"metrics_error": redact(f"suite {suite.name!r}: metrics raised {type(exc).__name__}: {exc}")[:300]}


def _typed(row: dict[str, Any]) -> Sample:
    """A sample row of today's store as the typed Sample (the store will return these itself)."""
    outcome = row.get("outcome") or "pending"
    verdict = None if outcome == "pending" else Verdict.from_row(row.get("verification"), outcome, row.get("reason"))
    usage = Usage(**{k: row[k] for k in Usage.model_fields if row.get(k) is not None})
    return Sample(id=row["id"], run_id=row["run_id"], suite=row["suite"], task_id=row["task_id"], route=row["route"],
                  epoch=row.get("epoch") or 0, outcome=Outcome(outcome), reason=row.get("reason"), verdict=verdict,
                  completion=row.get("completion"), usage=usage, started_at=row.get("started_at"),
                  finished_at=row.get("finished_at"))


def check_samples_path(path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"--samples {path} is not a readable file", fix="give the path of a JSONL samples file")
