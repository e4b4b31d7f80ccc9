"""`k2probe eval`, between the CLI and the runner: open (or resume) the run, plan its samples, run them, compute the
metrics, finish the run. Everything it reports is read back from the store."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2probe.core.errors import UsageError
from k2probe.core.redact import Redactor
from k2probe.eval.plan import EvalPlan, EvalTask, load_tasks, read_samples_file, task_id, units
from k2probe.eval.runner import EvalRunner, OnSample, Progress
from k2probe.sandbox.isolation import Isolation, isolation
from k2probe.sandbox.programs import ProgramVerdict, verify_programs
from k2probe.tasks.humaneval import SUITE as HUMANEVAL
from k2probe.tasks.humaneval import CodeProblem

if TYPE_CHECKING:
    from k2probe.contexts import RouteContext, Serve
    from k2probe.recording.store import Store

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
             on_sample: OnSample | None = None, timeout_s: float | None = None, serve: Serve | None = None
             ) -> EvalOutcome:
    """Run `plan` (or the plan of the run `resume` names) to its end, or for `timeout_s` at most (the samples still
    running then end as `error`, the run `timed_out`); `serve` serves its emulated routes (api.serve_emulator). With
    a samples file and no model to call, the sandbox starts verifying at once, while the store (SQLAlchemy) is still
    loading."""
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
                if run["command"] != "eval":
                    raise UsageError(f"run {run['id'][:8]} is a `{run['command']}` run, not an evaluation",
                                     fix="resume a run listed by `k2probe runs` as eval")
                plan = EvalPlan.from_config(run["config"])
                run_id = run["id"]
                held.enter_context(store.lease(run_id))  # refused while another process works on the run
            else:
                run_id = ""
            return _evaluate(plan, store, run_id, on_start, on_sample, ahead, timeout_s, serve)
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
              ahead: Future[dict[str, ProgramVerdict]] | None, timeout_s: float | None = None,
              serve: Serve | None = None) -> EvalOutcome:
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
        sessions: dict[str, RouteContext] = {}  # each route's context; all of them recorded in this one run
        if completions is None:
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
        store.plan_samples(run_id, plan.suite, units(tasks, routes, plan.epochs))
        if on_start is not None:
            on_start(run_id, sessions, sum(1 for s in store.samples(run_id) if s["outcome"] == "pending"))
        runner = EvalRunner(plan, store, run_id, tasks, iso, routes=sessions, completions=completions,
                            verdicts_ahead=ahead, on_sample=on_sample, timeout_s=timeout_s)
        status = "interrupted"
        try:
            progress = asyncio.run(runner.run())
            status = "timed_out" if progress.timed_out else "finished"
        finally:
            figures = metrics.compute(store, run_id, plan.epochs)
            emulated = any(s.route.emulated for s in sessions.values())
            store.finish_run(run_id, status, {"samples": figures.get(metrics.OVERALL, {}).get("samples", {}),
                                              "routes": list(sessions) or [SAMPLES_ROUTE], "emulated": emulated})
    return EvalOutcome(run_id, plan, routes, figures, metrics.samples(store, run_id), progress, iso.line())


def check_samples_path(path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"--samples {path} is not a readable file", fix="give the path of a JSONL samples file")
