"""k2probe as a library: keyword-argument entry points the CLI itself calls, returning the typed results the commands
print. Everything heavy (openai, SQLAlchemy, Starlette) is imported when a function is called, not when this module is.

This module sits above every layer but cli (which calls it): it is where the emulator is handed to the contexts
(`serve_emulator`), since the activities below may not import it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from k2probe.core.errors import ConfigError, ProbeFailed, UsageError

if TYPE_CHECKING:
    from k2probe.agent.runner import AgentResult, AgentTask
    from k2probe.contexts import RouteContext, RunContext, Serve
    from k2probe.core.config import Route
    from k2probe.diagnose.audit import AuditResult
    from k2probe.diagnose.doctor import Diagnosis
    from k2probe.diagnose.quickstart import OnStep, QuickstartResult
    from k2probe.emulator.server import EmulatorServer
    from k2probe.emulator.settings import EmulatorSettings
    from k2probe.eval.compare import Comparison
    from k2probe.eval.evaluate import EvalOutcome
    from k2probe.eval.plan import EvalPlan
    from k2probe.eval.runner import OnSample
    from k2probe.eval.scheduler import Scheduler
    from k2probe.eval.suite import Suite
    from k2probe.load.bench import BenchOutcome
    from k2probe.load.live import Progress
    from k2probe.load.shapes import Lengths

__all__ = ["RunningEmulator", "audit", "bench", "command_contexts", "compare", "doctor", "emulator", "eval_plan",
           "evaluate", "quickstart", "route_context", "run_agent", "serve_emulator"]

T = TypeVar("T")
OnNotices = Callable[[list[str]], None]


@dataclass(frozen=True)
class RunningEmulator:
    """An emulator serving on loopback: point a client at `base_url` with `api_key`."""

    base_url: str
    api_key: str
    settings: EmulatorSettings
    server: EmulatorServer

    def route(self, name: str = "emulator", model: str | None = None) -> Route:
        """A route to this emulator, for `doctor`, `audit` and `run_agent`."""
        from pydantic import SecretStr

        from k2probe.core.config import DEFAULT_MODEL, Route

        return Route(name=name, base_url=self.base_url, api_key=SecretStr(self.api_key), api_key_env=None,
                     model=model or DEFAULT_MODEL)


@contextmanager
def emulator(settings: EmulatorSettings | None = None, /, **fields: Any) -> Iterator[RunningEmulator]:
    """Serve the Kimi emulator on a free loopback port for the `with` block, e.g.
    `with k2probe.emulator(personality="lossy-relay", faults={"rate_limit": 0.2}, ttft_ms=50) as emu: ...`;
    `fields` are EmulatorSettings' (a bad one is a ValueError saying which)."""
    from k2probe.emulator.server import EmulatorServer
    from k2probe.emulator.settings import EmulatorSettings

    if settings is not None and fields:
        raise TypeError("give EmulatorSettings or keyword fields, not both")
    chosen = settings or EmulatorSettings(**fields)
    with EmulatorServer(chosen) as server:
        yield RunningEmulator(server.base_url, chosen.api_key, chosen, server)


def serve_emulator(settings: EmulatorSettings | None = None) -> Serve:
    """How an emulated route is served: by the built-in emulator on a free loopback port, with `settings` for the route
    a command names (by default the route's own key and personality) and the defaults for its fallbacks."""
    from k2probe.emulator.server import EmulatorServer
    from k2probe.emulator.settings import EmulatorSettings

    @contextmanager
    def serve(route: Route, *, fallback: bool) -> Iterator[str]:
        chosen = None if fallback else settings
        with EmulatorServer(chosen or EmulatorSettings(api_key=route.key(), personality=route.personality)) as server:
            yield server.base_url

    return serve


def route_context(route: str | Route | None = None, *, emulator: EmulatorSettings | None = None,
                  diagnose_key: bool = False, refresh_profile: bool = False) -> AbstractContextManager[RouteContext]:
    """A route (a name from k2probe.toml, a Route, or None for the default) ready to call for the `with` block, served
    by the built-in emulator (with `emulator` settings) when it is emulated."""
    from k2probe.contexts import open_route

    chosen = {"route": route} if route is not None and not isinstance(route, str) else {"name": route}
    return open_route(**chosen, serve=serve_emulator(emulator), diagnose_key=diagnose_key,
                      refresh_profile=refresh_profile)


@contextmanager
def command_contexts(command: str, route: str | Route | None = None, *, config: dict[str, Any] | None = None,
                     emulator: EmulatorSettings | None = None, diagnose_key: bool = False,
                     refresh_profile: bool = False, prove: bool = False) -> Iterator[tuple[RouteContext, RunContext]]:
    """A one-route command's two contexts: the route ready to call, then a `command` run recording it (finished when
    the block ends, with the run's summary). `prove`: one cheap request first, and a route whose configuration is
    wrong stops here with the fix (RouteContext.prove), before any run is recorded."""
    import asyncio

    from k2probe.contexts import open_run

    with route_context(route, emulator=emulator, diagnose_key=diagnose_key,
                       refresh_profile=refresh_profile) as routed:
        if prove:
            asyncio.run(routed.prove(command))
        with open_run(command, routed, config=config) as run:
            yield routed, run


def eval_plan(suite: str | Suite, *, routes: Sequence[str | None] | None = None, epochs: int = 1,
              concurrency: int = 8, tasks: Sequence[str] | None = None, limit: int | None = None,
              samples: str | Path | None = None, sandbox: str = "auto", max_tokens: int = 4096,
              fail_fast: bool = False, executor: str = "local", ray_address: str | None = None) -> EvalPlan:
    """The plan of an evaluation: `suite` (humaneval, basic, toolcalls, a suite folder or a suite .py file — a folder
    or file stored by its absolute path so a resume finds it from anywhere — or a Suite object, stored by its name)
    over `routes` (names from k2probe.toml; None, the default route)."""
    from k2probe.eval.plan import EvalPlan
    from k2probe.eval.suite import register
    from k2probe.tasks.shipped import is_user_suite

    if tasks is not None and not list(tasks):
        raise UsageError("tasks names no task", fix="give task ids, e.g. tasks=['HumanEval/0', 'HumanEval/3']")
    if not isinstance(suite, str):
        suite = register(suite).name  # known by its name here: the plan, a resume and the emulator find it
    elif suite and (is_user_suite(suite) or suite.endswith(".py")):
        suite = str(Path(suite).resolve())
    return EvalPlan(suite=suite, routes=list(routes) if routes else [None], epochs=epochs, concurrency=concurrency,
                    tasks=list(tasks) if tasks is not None else None, limit=limit,
                    samples_file=str(samples) if samples is not None else None, sandbox=sandbox,
                    max_tokens=max_tokens, fail_fast=fail_fast, executor=executor, ray_address=ray_address)


def evaluate(suite: str | Suite | EvalPlan | None = None, *, routes: Sequence[str | None] | None = None,
             epochs: int = 1, concurrency: int = 8, tasks: Sequence[str] | None = None, limit: int | None = None,
             samples: str | Path | None = None, sandbox: str = "auto", max_tokens: int = 4096,
             fail_fast: bool = False, resume: str | None = None, timeout_s: float | None = None, on_start: Any = None,
             on_sample: OnSample | None = None, scheduler: Scheduler | None = None) -> EvalOutcome:
    """Run an evaluation to its end (or `resume` an unfinished one) and return its outcome: run id, per-route and
    overall metrics (the suite's own under `suite_metrics`), every sample. `suite` is a suite's name, folder or .py
    file, a Suite object (your own, e.g. `k2probe.evaluate(MySuite())`), or a ready EvalPlan. `scheduler` runs the
    sample units (default: this process's event loop; eval/scheduler.py says what another must do)."""
    from k2probe.eval.evaluate import check_samples_path
    from k2probe.eval.evaluate import evaluate as run_evaluation
    from k2probe.eval.plan import EvalPlan

    given: Suite | None = None
    if isinstance(suite, EvalPlan):
        plan = suite
    elif suite is None and resume is None:
        raise UsageError("give a suite (humaneval, basic) or resume=RUN", fix="e.g. k2probe.evaluate('humaneval')")
    else:
        if suite is not None and not isinstance(suite, str):
            given = suite
        plan = eval_plan(given or suite or "", routes=routes, epochs=epochs, concurrency=concurrency, tasks=tasks,
                         limit=limit, samples=samples, sandbox=sandbox, max_tokens=max_tokens, fail_fast=fail_fast)
    check_samples_path(plan.samples_file)
    return run_evaluation(plan, resume=resume, on_start=on_start, on_sample=on_sample, timeout_s=timeout_s,
                          suite=given, scheduler=scheduler, serve=serve_emulator())


def bounded(work: Coroutine[Any, Any, T], seconds: float, what: str) -> T:
    """Run `work` to its end or for `seconds` at most, retries included; past that the activity failed."""
    import asyncio

    async def bounded_work() -> T:
        return await asyncio.wait_for(work, seconds)

    try:
        return asyncio.run(bounded_work())
    except TimeoutError as exc:
        raise ProbeFailed(f"{what} did not finish within --timeout {seconds:.0f} s (retries included)",
                          fix="raise --timeout, or run `k2probe doctor` to see where the route stalls") from exc


def doctor(route: str | Route | None = None, *, params: dict[str, Any] | None = None, timeout_s: float = 600.0,
           on_notices: OnNotices | None = None) -> Diagnosis:
    """The diagnosis ladder for one route (a name from k2probe.toml, a Route, or None for the default), recorded as
    a `doctor` run; `.diagnosis` is "ok" or the first failure's code. `on_notices` gets the route's notices first."""
    from k2probe.diagnose.doctor import run_doctor

    params = params or {}
    # doctor lets a broken key through to diagnose it, and asks the route afresh (where a stale inference is fixed)
    with command_contexts("doctor", route, config={"params": params}, diagnose_key=True,
                          refresh_profile=True) as (routed, run):
        if on_notices is not None:
            on_notices(routed.notices)
        result = bounded(run_doctor(routed, run, params), timeout_s, "doctor")
        run.summary = {"diagnosis": result.diagnosis}
    return result


def audit(route: str | Route | None = None, *, baseline: str | None = None, timeout_s: float = 600.0,
          on_notices: OnNotices | None = None) -> AuditResult:
    """What a route changes of the Kimi contract (`.verdict` "faithful" or "rewrites", `.findings`), with the added
    latency over a `baseline` route when one is named (its calls recorded in the same run)."""
    from k2probe.diagnose.audit import audit as run_audit

    with command_contexts("audit", route) as (routed, run):
        if on_notices is not None:
            on_notices(routed.notices)

        async def work() -> AuditResult:
            async with routed.transport(run.record) as transport:
                if baseline is None:
                    return await run_audit(transport, routed.profile, routed.route.name, routed.route.model)
                with route_context(baseline) as base:
                    async with base.transport(run.record) as base_transport:
                        return await run_audit(transport, routed.profile, routed.route.name, routed.route.model,
                                               baseline=(base_transport, base.route.model))

        result = bounded(work(), timeout_s, "audit")
        run.summary = {"verdict": result.verdict, "findings": [f.id for f in result.findings]}
    return result


def quickstart(route: str | Route | None = None, *, on_step: OnStep | None = None,
               on_notices: OnNotices | None = None) -> QuickstartResult:
    """Every step of the guide on one route (the emulator when nothing is configured): doctor, smoke, streaming,
    screenshot review, agent task, snippets; `on_step` gets each step as it ends. `.report` is the HTML report."""
    from k2probe.diagnose.quickstart import run_quickstart
    from k2probe.report.quickstart import write_quickstart_report

    with command_contexts("quickstart", route) as (routed, run):
        if on_notices is not None:
            on_notices(routed.notices)
        result = run_quickstart(routed, run, on_step=on_step)
        result.report = str(write_quickstart_report(result, routed, run))
        run.summary = {"ok": result.ok, "report": result.report,
                       "step_outcomes": result.as_json()["steps"]}
    return result


def bench(route: str | Route | None = None, *, concurrency: Sequence[int] | Literal["auto"] = (),
          rate: Sequence[float] = (), requests: int | None = None, duration_s: float | None = None,
          stream: bool = True, prompt_tokens: int | Lengths = 256, max_tokens: int | Lengths = 64,
          dataset: str | Path | None = None, seed: int = 0, warmup: int = 4, slo_ms: dict[str, float] | None = None,
          workers: int | None = None, record_calls: bool = False, unique_prompts: bool = True,
          html: str | Path | None = None, on_notices: OnNotices | None = None,
          on_step: Callable[[dict[str, Any]], None] | None = None,
          live: Callable[[Progress], AbstractContextManager[Any]] | None = None, executor: str = "local",
          ray_address: str | None = None) -> BenchOutcome:
    """Load-test a route, a step per `concurrency` (closed loop; "auto": a saturation sweep to the knee, by
    load/sweep.py's RULE) and per `rate` (open loop, arrivals per second; concurrency 1 and 8 when neither is given),
    `requests` per step (100 unless `duration_s`), after `warmup` requests not measured. Prompts are `prompt_tokens`
    long (a Lengths: drawn per request from `seed`) or read from `dataset` (JSONL), numbered unless not
    `unique_prompts`. One cheap request proves the route first (a wrong key, URL or model: ConfigError).
    `on_step` gets each step's figures as it ends; `live(progress)` is held open while the sweep runs (the CLI's
    live line). The sweep is kept as a bench run (its settings, a summary row per step and its histograms); one
    where nothing answered raises (ConfigError when every failure says the configuration is wrong, else
    ProbeFailed). `executor="ray"`: `workers` client processes on each node of the Ray cluster at `ray_address`
    (load/ray_workers.py), each reading the key from its node's `api_key_env`; each step keeps every node's figures."""
    import base64

    from k2probe.load.bench import BenchOutcome, BenchPlan, bench_call, default_workers, payloads, run_bench, verdict
    from k2probe.load.live import Progress
    from k2probe.load.shapes import Lengths, read_dataset

    auto = concurrency == "auto"
    fixed = [] if isinstance(concurrency, str) else list(concurrency)
    if auto and rate:
        raise UsageError("concurrency='auto' sweeps the concurrency, rate the arrival rates", fix="give one of them")
    if warmup < 0:
        raise UsageError(f"warmup={warmup}: not a number of requests", fix="e.g. warmup=4, or 0 for none")
    prompts = read_dataset(dataset) if dataset is not None else None  # a bad file is refused before any request
    lengths = [x if isinstance(x, Lengths) else Lengths.parse(str(x), name, upper)
               for x, name, upper in ((prompt_tokens, "prompt_tokens", 200_000), (max_tokens, "max_tokens", 100_000))]
    if executor not in ("local", "ray"):
        raise UsageError(f"executor {executor!r} is not one of local, ray", fix="use local or ray")
    with command_contexts("bench", route, prove=True) as (routed, run):
        if on_notices is not None:
            on_notices(routed.notices)
        key_env = None if routed.route.emulated else routed.route.api_key_env
        if executor == "ray" and not routed.route.emulated and not key_env:
            raise ConfigError(f"route {routed.route.name!r} has its key in no environment variable; with --executor "
                              "ray each node reads it from one", fix="set api_key_env for the route")
        plan = BenchPlan(routed.route.base_url or "", routed.route.key(), routed.route.model, routed.route.headers,
                         stream, lengths[0], lengths[1],
                         fixed or ([] if rate or auto else [1, 8]),
                         list(rate), requests if requests or duration_s else 100, duration_s, slo_ms or {},
                         workers or (1 if executor == "ray" else default_workers()), record_calls, unique_prompts, prompts,
                         None if dataset is None else str(dataset), seed, warmup, auto, executor, ray_address,
                         key_env)
        bodies = payloads(plan, routed.profile)  # what the steps cycle through

        def record(label: str, calls: list[dict[str, Any]]) -> None:
            for call in calls:
                run.record(bench_call(routed.route.name, routed.route.model, stream, bodies, label, call))

        progress = Progress(stream, on_calls=record if record_calls else None)
        with live(progress) if live is not None else contextlib.nullcontext():
            measured = run_bench(plan, bodies, on_step=on_step, progress=progress)
        steps = measured.steps
        outcome = BenchOutcome(routed.route.name, run.run_id, routed.route.emulated, stream, steps, plan.settings(),
                               measured.warmup, measured.sweep, measured.cluster)
        run.summary = {"steps": steps, "settings": outcome.settings, "warmup": outcome.warmup,
                       "sweep": outcome.sweep, "cluster": outcome.cluster, "histograms": {
            index: {name: base64.b64encode(h.encode()).decode() for name, h in result.histograms.items()}
            for index, result in measured.results.items()}}
        verdict(steps, routed.route)  # after the summary is kept: a failed sweep is still on record
        if html is not None:
            from k2probe.report.bench_html import write_bench_report

            write_bench_report(Path(html), routed.route.name, run.run_id, steps, emulated=routed.route.emulated,
                               stream=stream, settings=outcome.settings, warmup=outcome.warmup, sweep=outcome.sweep)
    return outcome


def run_agent(task: str | AgentTask, *, repo: str | Path | None = None, test_cmd: str | None = None,
              route: str | Route | None = None, max_steps: int = 30, max_cost_usd: float | None = None,
              timeout_s: float = 900.0, test_timeout_s: float = 120.0, sandbox: str = "auto") -> AgentResult:
    """The tool-calling loop on a private copy of a repository, verified in the sandbox (`.passed`,
    `.verification.status` passed | failed | error). `task` is a statement in words with `repo` (verified by
    `test_cmd`, by default pytest when the repository has tests), a shipped task's id (e.g. "parse-total", verified by
    its hidden tests), or a ready AgentTask."""
    import asyncio

    from k2probe.agent.loop import AgentLimits
    from k2probe.agent.runner import run_agent as run_loop
    from k2probe.sandbox.isolation import Limits, isolation

    iso = isolation(sandbox)  # fail closed before anything is sent
    if isinstance(task, str):
        task = agent_task(task, Path(repo) if repo is not None else None, test_cmd)
    limits = AgentLimits(max_steps=max_steps, max_cost_usd=max_cost_usd, timeout_s=timeout_s)
    sandbox_limits = Limits(wall_s=test_timeout_s, cpu_s=max(1, int(test_timeout_s)))
    with command_contexts("agent", route, config={"task": task.task_id, "limits": limits.__dict__},
                          prove=True) as (routed, run):
        result = asyncio.run(run_loop(routed, run, task, limits, sandbox_limits, iso=iso))
        run.summary = {"attempt": result.attempt_id, "passed": result.passed}
    return result


DEFAULT_TEST_CMD = "python -m pytest -q -p no:cacheprovider"


def agent_task(task: str, repo: Path | None = None, test_cmd: str | None = None, python: str | None = None,
               *, flag: str = "") -> AgentTask:
    """A shipped task by id (no repo; run under k2probe's own interpreter unless `python` is given), or the statement
    `task` on the caller's repository (run in the caller's environment, or with `python`); `flag` is how the caller
    names the options in its messages ("--" for the CLI, "" for keyword arguments)."""
    from k2probe.agent.runner import AgentTask
    from k2probe.sandbox.runtime import Runtime
    from k2probe.tasks.shipped import find_task

    def name(option: str) -> str:
        return f"--{option.replace('_', '-')}" if flag else option

    if repo is None:
        chosen = AgentTask.from_suite(find_task(task))
        if test_cmd:
            chosen.test_cmd = test_cmd
        if python is not None:
            chosen.runtime = Runtime.caller(python)
        return chosen
    if not repo.is_dir():
        raise UsageError(f"{name('repo')} {repo} is not a folder",
                         fix=f"point {name('repo')} at the repository's root folder")
    if test_cmd is None:
        if not ((repo / "tests").is_dir() or any(repo.glob("test_*.py")) or (repo / "pytest.ini").exists()):
            raise UsageError(f"no {name('test_cmd')} and no tests found in {repo}",
                             fix=f"pass {name('test_cmd')} with the command that decides whether the task is done")
        test_cmd = DEFAULT_TEST_CMD
    return AgentTask(task, repo.resolve(), test_cmd, runtime=Runtime.caller(python))


def compare(*runs: str, reference: str | None = None) -> Comparison:
    """Routes side by side on the same samples, from one evaluation over several routes or several runs (ids or their
    first characters): metrics, paired differences with 95% intervals, the cheapest route per accepted task."""
    from k2probe.eval.compare import compare as run_compare
    from k2probe.recording.store import Store

    store = Store()
    try:
        return run_compare(store, list(runs), reference)
    finally:
        store.dispose()
