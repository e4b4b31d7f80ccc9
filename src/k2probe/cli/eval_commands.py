"""Evaluation commands: eval, report, compare, suite check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k2probe.cli.app import (
    JsonOpt,
    _finite,
    app,
    render,
)
from k2probe.core.errors import ProbeFailed, UsageError

if TYPE_CHECKING:
    from k2probe.eval.plan import EvalPlan


@app.command("eval")
def eval_command(
        ctx: typer.Context,
        suite: Annotated[str | None, typer.Argument(help="humaneval, toolcalls, basic, a suite folder, or a suite .py file",
                                                    metavar="SUITE")] = None,
        route: Annotated[list[str] | None, typer.Option("--route", help="a route from k2probe.toml; repeat to compare "
                                                        "routes side by side", metavar="NAME")] = None,
        epochs: Annotated[int, typer.Option("--epochs", envvar="K2PROBE_EPOCHS", min=1, max=1000,
                                            help="samples per task and route (pass@k for k ≤ epochs)",
                                            metavar="K")] = 1,
        concurrency: Annotated[int, typer.Option("--concurrency", envvar="K2PROBE_CONCURRENCY", min=1, max=1000,
                                                 help="samples in flight at once", metavar="N")] = 8,
        tasks: Annotated[str | None, typer.Option("--tasks", help="only these task ids, comma-separated",
                                                  metavar="ID,...")] = None,
        limit: Annotated[int | None, typer.Option("--limit", min=1, max=1_000_000, help="only the first N tasks",
                                                  metavar="N")] = None,
        samples: Annotated[Path | None, typer.Option("--samples", help="verify these completions (JSONL of task_id, "
                                                     "completion) without calling a model", metavar="FILE")] = None,
        resume: Annotated[str | None, typer.Option("--resume", help="finish an interrupted evaluation run",
                                                   metavar="RUN")] = None,
        fail_under: Annotated[list[str] | None, typer.Option("--fail-under", help="exit 1 unless METRIC=VALUE holds "
                                                             "(accepted_rate, pass_at_K; error_rate and "
                                                             "tool_call_failure_rate: at most)",
                                                             metavar="METRIC=VALUE")] = None,
        junit: Annotated[Path | None, typer.Option("--junit", help="write JUnit XML here", metavar="FILE")] = None,
        html: Annotated[Path | None, typer.Option("--html", help="write the HTML report here", metavar="FILE")] = None,
        max_tokens: Annotated[int, typer.Option("--max-tokens", envvar="K2PROBE_MAX_TOKENS", min=1, max=1_000_000,
                                                help="output budget per request", metavar="N")] = 4096,
        sandbox: Annotated[str, typer.Option("--sandbox", envvar="K2PROBE_SANDBOX", help=(
            "auto (bubblewrap, refuse without it), bwrap, or none: run model-written code unisolated, at your risk"),
            metavar="TEXT")] = "auto",
        timeout: Annotated[float | None, typer.Option("--timeout", envvar="K2PROBE_TIMEOUT", min=1, max=30 * 86400,
                                                      callback=_finite, help="seconds for the whole run: samples not "
                                                      "finished by then end as error (timeout)",
                                                      metavar="NUMBER")] = None,
        fail_fast: Annotated[bool, typer.Option("--fail-fast", envvar="K2PROBE_FAIL_FAST", help=(
            "stop the run at the first sample k2probe fails on (default: that sample is error, the others go on)"))
        ] = False,
        max_error_rate: Annotated[float | None, typer.Option("--max-error-rate", envvar="K2PROBE_MAX_ERROR_RATE",
                                                             min=0, max=1,
                                                      callback=_finite, help="exit 1 when more samples than this "
                                                      "share end as error (no verdict: route, harness)",
                                                      metavar="RATE")] = None,
        executor: Annotated[str, typer.Option("--executor", envvar="K2PROBE_EXECUTOR", help=(
            "where programs are judged and agent attempts run: local (this machine) or ray (the nodes of a Ray "
            "cluster; pip install 'k2probe[ray]')"), metavar="TEXT")] = "local",
        ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="K2PROBE_RAY_ADDRESS", help=(
            "the Ray cluster (HOST:PORT; default: the one `ray start` runs on this machine)"), metavar="ADDR")] = None,
        as_json: JsonOpt = False) -> None:
    """Run a suite over one or more routes: every sample once, verified in the sandbox, then the guide's metrics."""
    if suite == "humaneval" and resume is None:  # its checkers and their sandboxes start while the rest loads
        from k2probe.sandbox.programs import warm_soon

        warm_soon(sandbox)
    from k2probe.api import eval_plan
    from k2probe.cli.eval import parse_thresholds, run_eval_command

    if suite is None and resume is None:
        raise UsageError("give a SUITE (humaneval, basic) or --resume RUN", fix="e.g. k2probe eval humaneval --limit 20")
    thresholds = parse_thresholds(fail_under or [], _epochs(resume, epochs, samples), max_error_rate)
    task_ids = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
    if task_ids == []:
        raise UsageError(f"--tasks {tasks!r} names no task",
                         fix="give task ids, comma-separated: --tasks HumanEval/0,HumanEval/3")
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor {executor!r} is not one of local, ray", fix="use --executor local or ray")
    plan = eval_plan(suite or "", routes=route, epochs=epochs, concurrency=concurrency, tasks=task_ids, limit=limit,
                     samples=samples, sandbox=sandbox, max_tokens=max_tokens, fail_fast=fail_fast,
                     executor=executor, ray_address=ray_address)
    if resume is not None:
        _refuse_conflicts(ctx, resume, plan)
    result, broken = run_eval_command(plan, resume, thresholds, junit, as_json, html, timeout)
    timed_out = bool(result.progress.timed_out and timeout is not None)
    if timed_out:  # the timeout's own line says why samples ended as error: one line, not two
        broken = [line for line in broken if "over --max-error-rate" not in line]
    for line in broken:
        render.err.print(f"k2probe: threshold not met: {line}", markup=False)
    if timed_out:
        raise ProbeFailed(f"eval did not finish within --timeout {timeout:g} s: {result.progress.timed_out} "
                          f"sample(s) ended as error (timeout); run {result.run_id[:8]} is marked timed_out",
                          fix="raise --timeout, or lower --limit / --epochs")
    if broken:
        raise typer.Exit(1)


# what a resumed run keeps of its own plan: an option given anew must agree with it (--concurrency may change)
KEPT_ON_RESUME = {"suite": ("suite", "SUITE"), "route": ("routes", "--route"), "epochs": ("epochs", "--epochs"),
                  "tasks": ("tasks", "--tasks"), "limit": ("limit", "--limit"), "samples": ("samples_file", "--samples"),
                  "max_tokens": ("max_tokens", "--max-tokens"), "sandbox": ("sandbox", "--sandbox"),
                  "fail_fast": ("fail_fast", "--fail-fast")}


def _refuse_conflicts(ctx: typer.Context, resume: str, given: EvalPlan) -> None:
    """`--resume RUN` finishes RUN as it was planned: an option given with it that says otherwise is a usage error,
    never silently ignored."""
    from k2probe.eval.plan import EvalPlan
    from k2probe.recording.store import Store

    sources = {name: ctx.get_parameter_source(name) for name in KEPT_ON_RESUME}
    named = [name for name, source in sources.items() if source is not None and source.name != "DEFAULT"]
    if not named:
        return
    store = Store()
    try:
        run = store.find_run(resume)
    finally:
        store.dispose()
    if run.command != "eval":
        return  # evaluate says so, in its own line
    kept = EvalPlan.from_config(run.config)
    for name in named:
        field, flag = KEPT_ON_RESUME[name]
        mine, theirs = getattr(given, field), getattr(kept, field)
        if mine != theirs:
            shown = ", ".join(str(r) for r in theirs) if isinstance(theirs, list) else theirs
            raise UsageError(f"--resume {resume} finishes run {run.id[:8]} as it was planned: {flag} "
                             f"{', '.join(str(r) for r in mine) if isinstance(mine, list) else mine} is not its "
                             f"{shown if shown is not None else 'none'}",
                             fix=f"drop {flag} to finish that run, or start a new run without --resume")


def _epochs(resume: str | None, epochs: int, samples: Path | None = None) -> int:
    """The epochs of the run being made (a samples file's: the most completions any task has), or of the run being
    resumed (its own plan's)."""
    if resume is None and samples is not None:
        from k2probe.eval.evaluate import check_samples_path
        from k2probe.eval.plan import read_samples_file

        check_samples_path(str(samples))
        return max((len(v) for v in read_samples_file(str(samples)).values()), default=1)
    if resume is None:
        return epochs
    from k2probe.recording.store import Store

    store = Store()
    try:
        return int((store.find_run(resume).config.get("eval") or {}).get("epochs") or 1)
    finally:
        store.dispose()


@app.command()
def report(run: Annotated[str, typer.Argument(help="a run id (eval, agent, bench or quickstart) or its first "
                                                   "characters", metavar="RUN")],
           html: Annotated[Path | None, typer.Option("--html", help="write the page here (default: "
                                                     "$K2PROBE_HOME/reports/KIND-RUN.html)", metavar="FILE")] = None,
           ) -> None:
    """A run's self-contained HTML page, from the store: an evaluation's verdict, metrics, charts and every sample
    with the model's answer; an agent run's transcript and verdict; a bench sweep; a quickstart's steps and calls."""
    from k2probe.core.config import home
    from k2probe.recording.store import Store
    from k2probe.report.pages import write_run_page

    if html is not None:
        from k2probe.core.files import check_output

        check_output(html, "--html")
    store = Store()
    try:
        found = store.find_run(run)
        path = write_run_page(store, found, html or home() / "reports" / f"{found.command}-{found.id[:8]}.html")
    finally:
        store.dispose()
    render.notice(f"wrote {path}")


@app.command()
def compare(runs: Annotated[list[str], typer.Argument(help="one evaluation run over several routes, or several runs",
                                                     metavar="RUN...")],
            reference: Annotated[str | None, typer.Option("--reference", help="the route the others are measured "
                                                          "against (default: the first)", metavar="NAME")] = None,
            as_json: JsonOpt = False) -> None:
    """Routes side by side on the same samples: metrics, paired differences with 95% intervals, the cheapest route
    per accepted task."""
    from k2probe.eval.compare import compare as run_compare
    from k2probe.recording.store import Store
    from k2probe.report.compare import print_comparison

    store = Store()
    try:
        result = run_compare(store, runs, reference)
    finally:
        store.dispose()
    if as_json:
        render.emit_json(result.model_dump(mode="json"))
    else:
        print_comparison(result)


suite_app = typer.Typer(no_args_is_help=True, help="Task suites: prove their harness on this machine.")
app.add_typer(suite_app, name="suite")


@suite_app.command("check")
def suite_check(name: Annotated[str, typer.Argument(help="a shipped suite", metavar="SUITE")] = "basic",
                sandbox: Annotated[str, typer.Option("--sandbox", envvar="K2PROBE_SANDBOX",
                                                     help="auto, bwrap or none", metavar="TEXT")] = "auto",
                as_json: JsonOpt = False) -> None:
    """For every task: the untouched repository fails its hidden tests and the reference solution passes them."""
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from k2probe.sandbox.isolation import isolation
    from k2probe.sandbox.preflight import preflight
    from k2probe.tasks.shipped import load_suite

    iso = isolation(sandbox)
    tasks = load_suite(name)
    results = []
    with Progress(console=render.err, transient=True, disable=as_json) as progress:
        bar = progress.add_task(f"suite {name}", total=len(tasks))
        for item in tasks:
            results.append(preflight(item, iso))
            progress.advance(bar)
    ok = all(r.ok for r in results)
    if as_json:
        from k2probe.report.documents import SuiteCheckDocument

        document = SuiteCheckDocument.model_validate({"suite": name, "ok": ok, "isolation": iso.line(),
                                                      "tasks": [r.as_json() for r in results]})
        render.emit_json(document.model_dump(mode="json"))
    else:
        table = Table(title=f"suite {name}: preflight ({iso.line()})")
        for column in ("task", "untouched", "solution", "verdict"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(r.task, r.untouched.status, r.solved.status,
                          Text("ok", style="green") if r.ok else render.shown(r.detail, "bold red"))
        render.out.print(table)
    if not ok:
        raise typer.Exit(1)
