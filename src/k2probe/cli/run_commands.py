"""Commands on agent work and on what was recorded: agent, runs, show, review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from k2probe.cli.app import (
    JsonOpt,
    RouteOpt,
    _finite,
    _notices,
    app,
    load_all_media,
    render,
)
from k2probe.core.errors import UsageError


@app.command()
def agent(task: Annotated[str | None, typer.Argument(help="what to do, in words", metavar="TASK")] = None,
          repo: Annotated[Path | None, typer.Option("--repo", help="the repository (copied; never modified)",
                                                    metavar="PATH")] = None,
          test_cmd: Annotated[str | None, typer.Option("--test-cmd", envvar="K2PROBE_TEST_CMD",
                                                       help="the command that verifies the task", metavar="TEXT")] = None,
          task_ref: Annotated[str | None, typer.Option("--task", help="a shipped task, e.g. parse-total",
                                                       metavar="TEXT")] = None,
          list_tasks: Annotated[bool, typer.Option("--list-tasks", help="list the shipped tasks")] = False,
          route: RouteOpt = None,
          max_steps: Annotated[int, typer.Option("--max-steps", envvar="K2PROBE_MAX_STEPS", min=1, max=10_000,
                                                 help="requests to the model at most", metavar="N")] = 30,
          max_cost: Annotated[float | None, typer.Option("--max-cost", envvar="K2PROBE_MAX_COST", min=1e-9,
                                                         max=1_000_000, callback=_finite, help="USD",
                                                             metavar="NUMBER")] = None,
          timeout: Annotated[float, typer.Option("--timeout", envvar="K2PROBE_TIMEOUT", min=1, max=7 * 86400,
                                                callback=_finite, help="seconds for the whole run",
                                                    metavar="NUMBER")] = 900.0,
          test_timeout: Annotated[float, typer.Option("--test-timeout", envvar="K2PROBE_TEST_TIMEOUT", min=1, max=86400,
                                                      callback=_finite, help="seconds per test run",
                                                          metavar="NUMBER")] = 120.0,
          image: Annotated[list[Path] | None, typer.Option("--image", help="an image for the task (repeatable)",
                                                           metavar="PATH")] = None,
          video: Annotated[list[Path] | None, typer.Option("--video", help="a video for the task (repeatable)",
                                                           metavar="PATH")] = None,
          fit: Annotated[bool, typer.Option("--fit", envvar="K2PROBE_FIT", help="scale media into the limits")] = False,
          upload: Annotated[bool, typer.Option("--upload", envvar="K2PROBE_UPLOAD",
                                               help="send media via the files API")] = False,
          sandbox: Annotated[str, typer.Option("--sandbox", envvar="K2PROBE_SANDBOX", help=(
              "auto (bubblewrap, refuse without it), bwrap, or none: run model-written code unisolated, at your "
              "risk"), metavar="TEXT")] = "auto",
          python: Annotated[Path | None, typer.Option("--python", envvar="K2PROBE_PYTHON", help=(
              "the interpreter the tests run with (default: for --repo, the caller's PATH and venv; for --task, "
              "k2probe's own)"), metavar="PATH")] = None,
          executor: Annotated[str, typer.Option("--executor", envvar="K2PROBE_EXECUTOR", help=(
              "where the workspace and its tool and test runs are: local (this machine) or ray (one node of a Ray "
              "cluster; pip install 'k2probe[ray]')"), metavar="TEXT")] = "local",
          ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="K2PROBE_RAY_ADDRESS", help=(
              "the Ray cluster (HOST:PORT; default: the one `ray start` runs on this machine)"), metavar="ADDR")] = None,
          as_json: JsonOpt = False) -> None:
    """The tool-calling loop on a private copy of a repository, verified by tests; exit 0 only if verified."""
    from k2probe.agent import AgentLimits
    from k2probe.api import command_contexts
    from k2probe.cli.agent import choose_task, run_agent_command, show_result
    from k2probe.core.results import Outcome
    from k2probe.sandbox.executor import executor_of
    from k2probe.tasks.shipped import load_suite

    if list_tasks:
        if as_json:
            from k2probe.report.documents import AgentTasksDocument, ShippedTask

            render.emit_json(AgentTasksDocument(tasks=[ShippedTask(suite=t.suite, id=t.id, title=t.title)
                                                       for t in load_suite()]).model_dump(mode="json"))
            return
        for item in load_suite():
            render.out.print(render.shown(f"{item.suite}/{item.id:<14} {item.title}"))
        return
    # fail closed before anything is sent: no isolation (or no cluster that can give it), no agent
    where = executor_of(sandbox, executor, ray_address)
    chosen = choose_task(task, repo, test_cmd, task_ref, python)
    chosen.media = load_all_media(route, image, video, fit=fit)
    chosen.force_upload = upload
    limits = AgentLimits(max_steps=max_steps, max_cost_usd=max_cost, timeout_s=timeout)
    with command_contexts("agent", route, config={"task": chosen.task_id, "limits": limits.__dict__},
                          prove=True) as (routed, run):
        _notices(routed.notices)
        if routed.route.emulated and chosen.shipped is None:
            from k2probe.eval.suite import UNPLAYED

            render.notice(UNPLAYED.format(suite="a task of your own"))
        result = run_agent_command(routed, run, chosen, limits, test_timeout, as_json, where)
        run.summary = {"attempt": result.attempt_id, "passed": result.passed}
    if as_json:
        from k2probe.report.documents import AgentDocument

        render.emit_json(AgentDocument.model_validate(result.as_json()).model_dump(mode="json"), run.redactor)
    else:
        show_result(result)
    if not result.passed:  # failed: the model's work, 1; error: the harness could not judge it, 2
        raise typer.Exit(2 if result.verification.status == Outcome.ERROR else 1)


@app.command()
def runs(limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000, help="how many runs", metavar="N")] = 20,
         as_json: JsonOpt = False) -> None:
    """The recorded runs, newest first."""
    from k2probe.recording.store import Store
    from k2probe.report.documents import RunsDocument
    from k2probe.report.runs import print_runs

    store = Store()
    items = store.runs(limit)
    store.dispose()
    if as_json:
        render.emit_json(RunsDocument(runs=items).model_dump(mode="json"))
    else:
        print_runs(items)


@app.command()
def show(run: Annotated[str, typer.Argument(help="a run id or its first characters",
                                            metavar="RUN")],
         limit: Annotated[int, typer.Option("--limit", min=0, max=1_000_000, help="calls shown at most",
                                            metavar="N")] = 200,
         offset: Annotated[int, typer.Option("--offset", min=0, max=10**12, help="calls skipped first",
                                             metavar="N")] = 0,
         as_json: JsonOpt = False) -> None:
    """One run: a page of its calls (timings, tokens, cost, media), attempts, samples and reviews."""
    from k2probe.recording.store import Store
    from k2probe.report.runs import print_run, run_detail

    store = Store()
    detail = run_detail(store, run, limit=limit, offset=offset)
    store.dispose()
    if as_json:
        render.emit_json(detail.model_dump(mode="json"))
    else:
        print_run(detail)


@app.command()
def review(run: Annotated[str, typer.Argument(help="a run id or its first characters", metavar="RUN")],
           accept_flag: Annotated[bool, typer.Option("--accept", help="the output was accepted")] = False,
           reject_flag: Annotated[bool, typer.Option("--reject", help="the output was rejected")] = False,
           repair_minutes: Annotated[float | None, typer.Option("--repair-minutes", min=0, max=100_000, callback=_finite,
                                                                help="minutes a person spent fixing the output",
                                                                    metavar="NUMBER")] = None,
           rollback: Annotated[bool, typer.Option("--rollback", help="the change had to be rolled back")] = False,
           handoff: Annotated[bool, typer.Option("--handoff", help="a person had to take the task over")] = False,
           note: Annotated[str | None, typer.Option("--note", help="a free-text remark", metavar="TEXT")] = None,
           attempt: Annotated[str | None, typer.Option("--attempt", help="one agent attempt of the run",
                                                       metavar="TEXT")] = None,
           sample: Annotated[str | None, typer.Option("--sample", help="one sample of an evaluation run: TASK_ID or "
                                                      "TASK_ID@EPOCH (it then overrides the verified outcome in "
                                                      "accepted_rate)", metavar="TASK")] = None,
           as_json: JsonOpt = False) -> None:
    """Record a human verdict on a run: accepted or not, repair time, rollback, handoff."""
    from k2probe.recording.store import Store
    from k2probe.report.runs import review as review_run

    if accept_flag and reject_flag:
        raise UsageError("--accept and --reject together say two things", fix="give one of them")
    accept = True if accept_flag else False if reject_flag else None
    store = Store()
    detail = review_run(store, run, accepted=accept, repair_minutes=repair_minutes, rollback=rollback,
                        handoff=handoff, note=note, attempt=attempt, sample=sample)
    store.dispose()
    if as_json:
        render.emit_json(detail.model_dump(mode="json"))
    else:
        render.notice(f"review recorded for run {detail.id[:8]}: {'accepted' if accept else 'rejected'}")
