"""The command line: parse options (each also an environment variable), call one activity, print its result."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from k2probe import __version__
from k2probe.core.envnames import KEY_ENVS
from k2probe.core.errors import ConfigError, K2ProbeError, ProbeFailed, UsageError
from k2probe.core.redact import RedactingStream, remember
from k2probe.diagnose.snippets import LANGS
from k2probe.emulator.settings import FAULT_KINDS, PERSONALITIES

if TYPE_CHECKING:  # each command imports what it uses, so `--help` and `routes` start fast
    from collections.abc import Coroutine

    from k2probe.client.media import Media
    from k2probe.core.failures import Failure
    from k2probe.report import terminal as render
else:
    class _LazyRender:
        """`render` (rich's consoles) loaded on first use: `snippet` and `--version` print without it."""

        def __getattr__(self, name: str) -> Any:
            from k2probe.report import terminal as render

            return getattr(render, name)

    render = _LazyRender()


T = TypeVar("T")
# typer 0.29 prints an argument's Python type beside its name (`PROMPT <str>`); the name already says what to give
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]}, rich_markup_mode=None,
                  help="Test and evaluate coding-model APIs: Kimi K2.7 Code through any OpenAI-compatible route.")

def _finite(value: float | None) -> float | None:
    """Option callback: NaN and infinity are not numbers a limit can be."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


RouteOpt = Annotated[str | None, typer.Option("--route", envvar="K2PROBE_ROUTE", help="route name from k2probe.toml",
                                              metavar="NAME")]
JsonOpt = Annotated[bool, typer.Option("--json", envvar="K2PROBE_JSON", help="print one JSON document on stdout")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", envvar="K2PROBE_TIMEOUT", min=1, max=86400, callback=_finite,
                                           help="seconds for the whole command, retries included", metavar="NUMBER")]
StrictOpt = Annotated[bool, typer.Option("--strict", envvar="K2PROBE_STRICT",
                                         help="refuse a request the model would reject instead of fixing it")]


def _bounded(work: Coroutine[Any, Any, T], seconds: float, what: str) -> T:
    """Run `work` to its end or for `seconds` at most, retries included; past that the command failed (exit 1),
    and what its requests cost so far is recorded as cancelled."""
    import asyncio

    async def bounded() -> T:
        return await asyncio.wait_for(work, seconds)

    try:
        return asyncio.run(bounded())
    except TimeoutError as exc:
        raise ProbeFailed(f"{what} did not finish within --timeout {seconds:.0f} s (retries included)",
                          fix="raise --timeout, or run `k2probe doctor` to see where the route stalls") from exc


CONFIG_CODES = {"invalid_key", "bad_base_url", "unreachable", "unknown_model", "doubled_v1", "missing_v1"}


def _notices(session_notices: list[str]) -> None:
    """Notices go to stderr, so --json keeps stdout to the one document."""
    for line in session_notices:
        render.notice(line)


def load_all_media(route: str | None, images: list[Path] | None, videos: list[Path] | None, *,
                   fit: bool) -> list[Media]:
    """Read and check every --image and --video before anything starts (bad files are exit 2, nothing sent)."""
    from k2probe.client.media import load_media
    from k2probe.core.config import load_file, resolve_route
    from k2probe.core.profiles import profile_for

    if not images and not videos:
        return []
    selected = resolve_route(route, load_file())
    limits = profile_for(selected.model, selected.profile).media
    return ([load_media(p, "image", limits, fit=fit) for p in images or []]
            + [load_media(p, "video", limits, fit=fit) for p in videos or []])


def _failed(what: str, failure: Failure | None) -> K2ProbeError:
    """A setup problem (key, URL, model) is bad configuration, exit 2; anything else means the tested thing failed."""
    from k2probe.diagnose.doctor import code_for

    if failure is None:
        return ProbeFailed(f"{what}: the answer was empty", fix="run `k2probe doctor` to find out why")
    code = code_for(failure)
    error = ConfigError if code in CONFIG_CODES else ProbeFailed
    return error(f"{what}: {failure.line()}", fix=f"looks like {code}: run `k2probe doctor` for the fix")


@app.command()
def doctor(route: RouteOpt = None, param: Annotated[list[str] | None, typer.Option(
        "--param", help="a parameter your client sends by default, NAME=VALUE (repeatable)", metavar="TEXT")] = None,
        timeout: TimeoutOpt = 600.0, as_json: JsonOpt = False) -> None:
    """The diagnosis ladder for one route: key, base URL, model id, parameters, tool_choice, streaming, reasoning."""
    from k2probe.core.config import parse_params
    from k2probe.diagnose.doctor import run_doctor
    from k2probe.session import open_session

    params = parse_params(param or [])
    with open_session("doctor", route, config_snapshot={"params": params}, diagnose_key=True) as session:
        _notices(session.notices)
        result = _bounded(run_doctor(session, params), timeout, "doctor")
        session.summary = {"diagnosis": result.diagnosis}
    if as_json:
        render.emit_json(result.as_json(), session.redactor)
    else:
        render.diagnosis(result)
    if result.diagnosis != "ok":
        raise typer.Exit(1)


@app.command()
def audit(route: RouteOpt = None,
          baseline: Annotated[str | None, typer.Option("--baseline", help="a direct route to compare latency with",
                                                       metavar="NAME")] = None,
          timeout: TimeoutOpt = 600.0, as_json: JsonOpt = False) -> None:
    """What does this route change? Probes a faithful Kimi route and a rewriting one answer differently."""
    from k2probe.diagnose.audit import audit as run_audit
    from k2probe.diagnose.audit import print_audit
    from k2probe.session import open_session

    with open_session("audit", route) as session:
        _notices(session.notices)

        async def work() -> Any:
            async with session.transport() as transport:
                if baseline is None:
                    return await run_audit(transport, session.profile, session.route.name, session.route.model)
                with open_session("audit", baseline, join=(session.store, session.run_id)) as base:
                    async with base.transport() as base_transport:
                        return await run_audit(transport, session.profile, session.route.name, session.route.model,
                                               baseline=(base_transport, base.route.model))

        result = _bounded(work(), timeout, "audit")
        session.summary = {"verdict": result.verdict, "findings": [f.id for f in result.findings]}
    if as_json:
        render.emit_json(result.as_json(), session.redactor)
    else:
        print_audit(result)
    if result.verdict != "faithful":
        raise typer.Exit(1)


def _numbers(text: str | None, kind: type, option: str) -> list[Any]:
    if not text:
        return []
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: not a list of numbers", fix=f"e.g. {option} 1,8,32") from exc
    if not values or any(not math.isfinite(v) or v <= 0 or v > 100_000 for v in values):
        raise UsageError(f"{option} {text!r}: each value must be a positive number up to 100000",
                         fix=f"e.g. {option} 1,8,32")
    return values


@app.command()
def bench(route: RouteOpt = None,
          concurrency: Annotated[str | None, typer.Option("--concurrency", help="closed loop: requests in flight, "
                                                          "a sweep when several (1,8,32)", metavar="N[,N...]")] = None,
          rate: Annotated[str | None, typer.Option("--rate", help="open loop: Poisson arrivals per second, a sweep "
                                                   "when several", metavar="R[,R...]")] = None,
          requests: Annotated[int | None, typer.Option("--requests", min=1, max=10_000_000,
                                                       help="requests per step (default 100 unless --duration)",
                                                       metavar="N")] = None,
          duration: Annotated[float | None, typer.Option("--duration", min=0.1, max=86400, callback=_finite,
                                                         help="seconds per step", metavar="S")] = None,
          stream: Annotated[bool, typer.Option("--stream/--no-stream", help="stream the answers (TTFT, ITL)")] = True,
          prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", min=1, max=200_000, help="prompt length",
                                                     metavar="N")] = 256,
          max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, max=100_000, help="output budget per "
                                                  "request", metavar="N")] = 64,
          slo: Annotated[str | None, typer.Option("--slo", help="goodput limits: ttft_ms=…,itl_ms=…,e2e_ms=…",
                                                  metavar="NAME=MS[,...]")] = None,
          workers: Annotated[int | None, typer.Option("--workers", min=1, max=64, help="client processes "
                                                      "(default: up to 4, one per core)", metavar="W")] = None,
          html: Annotated[Path | None, typer.Option("--html", help="write the charts here", metavar="FILE")] = None,
          as_json: JsonOpt = False) -> None:
    """Load-test a route: TTFT, time to first content, ITL, TPOT, latency, throughput and goodput per step."""
    from k2probe.load.bench import BenchPlan, default_workers, run_bench
    from k2probe.session import open_session

    limits: dict[str, float] = {}
    for item in (slo or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        if name.strip() not in ("ttft_ms", "itl_ms", "e2e_ms"):
            raise UsageError(f"--slo {item!r}: unknown limit", fix="use ttft_ms, itl_ms, e2e_ms, e.g. --slo ttft_ms=500")
        [number] = _numbers(value, float, "--slo " + name.strip())
        limits[name.strip().removesuffix("_ms")] = number
    concurrencies = _numbers(concurrency, int, "--concurrency")
    rates = _numbers(rate, float, "--rate")
    if html is not None and not html.parent.is_dir():
        raise UsageError(f"--html {html}: the folder {html.parent} does not exist", fix="create it first")
    if not concurrencies and not rates:
        concurrencies = [1, 8]
    with open_session("bench", route) as session:
        _notices(session.notices)
        plan = BenchPlan(session.route.base_url or "", session.route.key(), session.route.model, session.route.headers,
                         stream, prompt_tokens, max_tokens, concurrencies, rates,
                         requests if requests or duration else 100, duration, limits, workers or default_workers())

        def shown(row: dict[str, Any]) -> None:
            if not as_json:
                where = f"concurrency {row['concurrency']}" if "concurrency" in row else f"rate {row['rate']:g}/s"
                ttft = row["ttft_ms"] if stream else row["e2e_ms"]
                label = "TTFT" if stream else "latency"
                render.notice(f"{where}: {row['ok']}/{row['requests']} ok, {row['rps']:.1f} req/s, "
                              f"{row['output_tps']:.0f} tok/s, {label} p50 {ttft['p50'] or 0:.1f} / p99 "
                              f"{ttft['p99'] or 0:.1f} ms, failed {row['failed'] or 0}")

        steps, merged = run_bench(plan, session.profile, on_step=shown)
        import base64

        session.summary = {"steps": steps, "histograms": {
            index: {name: base64.b64encode(h.encode()).decode() for name, h in result.histograms.items()}
            for index, result in merged.items()}}
        document = {"route": session.route.name, "run_id": session.run_id, "emulated": session.route.emulated,
                    "steps": steps}
        if html is not None:
            from k2probe.report.bench_html import write_bench_report

            write_bench_report(html, session.route.name, session.run_id, steps, emulated=session.route.emulated,
                               stream=stream)
            if not as_json:
                render.notice(f"wrote {html}")
    if as_json:
        render.emit_json(document)
    else:
        from k2probe.load.bench import print_steps

        print_steps(steps, stream, session.route.emulated)


@app.command()
def smoke(route: RouteOpt = None, strict: StrictOpt = False, timeout: TimeoutOpt = 600.0,
          as_json: JsonOpt = False) -> None:
    """The guide's first code-review request; saves the known-good record."""
    from k2probe.core.records import figures
    from k2probe.diagnose.smoke import run_smoke
    from k2probe.session import open_session

    with open_session("smoke", route) as session:
        _notices(session.notices)
        result = _bounded(run_smoke(session, strict=strict), timeout, "smoke")
    outcome = result.outcome
    if as_json:
        render.emit_json({"route": session.route.name, "ok": result.known_good is not None,
                          "error": outcome.failure.line() if outcome.failure else None,
                          "answer": outcome.content, "known_good_path": result.path,
                          "changes": [c.line() for c in result.changes], **figures(outcome.last)}, session.redactor)
    else:
        render.changes(result.changes)
        if outcome.failure is None:
            render.out.print(outcome.content)
            render.out.print(render.figures_line(outcome.last), style="bold")
            render.notice(f"known-good record saved: {result.path}")
    if result.known_good is None:
        raise _failed("smoke failed", outcome.failure)


@app.command()
def chat(prompt: Annotated[str, typer.Argument(help="what to ask", metavar="PROMPT")], route: RouteOpt = None,
         system: Annotated[str | None, typer.Option("--system", help="a system message", metavar="TEXT")] = None,
         stream: Annotated[bool, typer.Option("--stream", envvar="K2PROBE_STREAM",
                                              help="stream the answer: reasoning, then content, with TTFT")] = False,
         max_tokens: Annotated[int | None, typer.Option("--max-tokens", envvar="K2PROBE_MAX_TOKENS", min=1, max=10_000_000,
                                                         help="the answer's token budget", metavar="N")] = None,
         param: Annotated[list[str] | None, typer.Option("--param", help="extra body field NAME=VALUE",
                                                         metavar="TEXT")] = None,
         image: Annotated[list[Path] | None, typer.Option("--image", help="an image to send (repeatable)",
                                                          metavar="PATH")] = None,
         video: Annotated[list[Path] | None, typer.Option("--video", help="a video to send (repeatable)",
                                                          metavar="PATH")] = None,
         fit: Annotated[bool, typer.Option("--fit", envvar="K2PROBE_FIT",
                                           help="scale media that exceed the model's limits")] = False,
         upload: Annotated[bool, typer.Option("--upload", envvar="K2PROBE_UPLOAD",
                                              help="send media through the files API")] = False,
         strict: StrictOpt = False, timeout: TimeoutOpt = 600.0, as_json: JsonOpt = False) -> None:
    """One request; --stream shows reasoning dimmed, then the answer, then its figures."""
    from k2probe.core.config import load_file, parse_params, resolve_route
    from k2probe.core.records import figures
    from k2probe.diagnose.chat import chat_request, run_chat
    from k2probe.session import open_session

    if not prompt.strip():
        raise UsageError("the prompt is empty", fix='give the question, e.g. k2probe chat "Review this function"')
    params = parse_params(param or [])
    selected = resolve_route(route, load_file())
    media = load_all_media(route, image, video, fit=fit)
    with open_session("chat", route=selected) as session:
        _notices(session.notices)
        request = chat_request(session.route.model, prompt, system=system, stream=stream, max_tokens=max_tokens,
                               params={**session.route.params, **params})
        live = render.LivePrinter() if stream and not as_json else None
        quiet = as_json
        result = _bounded(run_chat(session, request, strict=strict, listener=live,
                                      on_changes=None if quiet else render.changes, media=media,
                                      force_upload=upload, on_notes=None if quiet else render.media_notes),
                          timeout, "chat")
        if live:
            live.finish()
    outcome = result.outcome
    if as_json:
        render.emit_json({"route": session.route.name, "ok": outcome.ok,
                          "error": outcome.failure.line() if outcome.failure else None, "answer": outcome.content,
                          "reasoning": outcome.reasoning, "changes": [c.line() for c in result.changes],
                          "media": [m.record() for m in media], "media_notes": result.media_notes,
                          "retries": outcome.retries, **figures(outcome.last)}, session.redactor)
    else:
        if not stream and outcome.ok:
            if outcome.reasoning:
                render.out.print(outcome.reasoning, style="dim")
            render.out.print(outcome.content)
        render.out.print(render.figures_line(outcome.last), style="bold")
    if outcome.ok and session.profile.reasoning_in_history and outcome.reasoning is None:
        render.notice(f"warning: no reasoning came back from {session.route.model}, a thinking model: this route may "
                      "strip reasoning_content, which breaks tool loops (run `k2probe doctor`)")
    if outcome.failure is not None:
        raise _failed("chat failed", outcome.failure)


@app.command("eval")
def eval_command(
        suite: Annotated[str | None, typer.Argument(help="humaneval, toolcalls, basic, or a suite folder",
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
        as_json: JsonOpt = False) -> None:
    """Run a suite over one or more routes: every sample once, verified in the sandbox, then the guide's metrics."""
    from k2probe.cli.eval import parse_thresholds, run_eval_command
    from k2probe.eval.plan import EvalPlan

    if suite is None and resume is None:
        raise UsageError("give a SUITE (humaneval, basic) or --resume RUN", fix="e.g. k2probe eval humaneval --limit 20")
    from k2probe.tasks.shipped import is_user_suite

    thresholds = parse_thresholds(fail_under or [])
    task_ids = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
    if task_ids == []:
        raise UsageError(f"--tasks {tasks!r} names no task",
                         fix="give task ids, comma-separated: --tasks HumanEval/0,HumanEval/3")
    if suite and is_user_suite(suite):  # a user suite is stored by its absolute path, so --resume finds it anywhere
        suite = str(Path(suite).resolve())
    plan = EvalPlan(suite=suite or "", routes=list(route) if route else [None], epochs=epochs,
                    concurrency=concurrency, tasks=task_ids,
                    limit=limit, samples_file=str(samples) if samples else None, sandbox=sandbox,
                    max_tokens=max_tokens)
    _, broken = run_eval_command(plan, resume, thresholds, junit, as_json, html)
    if broken:
        for line in broken:
            render.err.print(f"k2probe: threshold not met: {line}", markup=False)
        raise typer.Exit(1)


@app.command()
def report(run: Annotated[str, typer.Argument(help="an evaluation run id or its first characters", metavar="RUN")],
           html: Annotated[Path | None, typer.Option("--html", help="write the page here (default: "
                                                     "$K2PROBE_HOME/reports/eval-RUN.html)", metavar="FILE")] = None,
           ) -> None:
    """An evaluation's self-contained HTML report, from the store: verdict, metrics, charts, every non-pass."""
    from k2probe.core.config import home
    from k2probe.recording.store import Store
    from k2probe.report.evaluation_html import write_eval_report

    if html is not None and not html.parent.is_dir():
        raise UsageError(f"--html {html}: the folder {html.parent} does not exist", fix="create it first")
    store = Store()
    try:
        found = store.find_run(run)
        if found["command"] != "eval":
            raise UsageError(f"run {found['id'][:8]} is a `{found['command']}` run", fix="give an eval run's id")
        path = write_eval_report(store, found["id"], html or home() / "reports" / f"eval-{found['id'][:8]}.html")
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
    from k2probe.eval.compare import print_comparison
    from k2probe.recording.store import Store

    store = Store()
    try:
        result = run_compare(store, runs, reference)
    finally:
        store.dispose()
    if as_json:
        render.emit_json(result.as_json())
    else:
        print_comparison(result)


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
          as_json: JsonOpt = False) -> None:
    """The tool-calling loop on a private copy of a repository, verified by tests; exit 0 only if verified."""
    from k2probe.agent import AgentLimits
    from k2probe.cli.agent import choose_task, run_agent_command, show_result
    from k2probe.sandbox.isolation import isolation
    from k2probe.session import open_session
    from k2probe.tasks.shipped import load_suite

    if list_tasks:
        for item in load_suite():
            render.out.print(f"{item.suite}/{item.id:<14} {item.title}")
        return
    iso = isolation(sandbox)  # fail closed before anything is sent: no isolation, no agent (unless --sandbox none)
    chosen = choose_task(task, repo, test_cmd, task_ref, python)
    chosen.media = load_all_media(route, image, video, fit=fit)
    chosen.force_upload = upload
    limits = AgentLimits(max_steps=max_steps, max_cost_usd=max_cost, timeout_s=timeout)
    with open_session("agent", route, config_snapshot={"task": chosen.task_id, "limits": limits.__dict__}) as session:
        _notices(session.notices)
        result = run_agent_command(session, chosen, limits, test_timeout, as_json, iso)
        session.summary = {"attempt": result.attempt_id, "passed": result.passed}
    if as_json:
        render.emit_json(result.as_json(), session.redactor)
    else:
        show_result(result)
    if not result.passed:  # failed: the model's work, 1; error: the harness could not judge it, 2
        raise typer.Exit(2 if result.verification.status == "error" else 1)


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
        render.emit_json({"suite": name, "ok": ok, "isolation": iso.line(), "tasks": [r.as_json() for r in results]})
    else:
        table = Table(title=f"suite {name}: preflight ({iso.line()})")
        for column in ("task", "untouched", "solution", "verdict"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(r.task, r.untouched.status, r.solved.status,
                          Text("ok", style="green") if r.ok else Text(r.detail, style="bold red"))
        render.out.print(table)
    if not ok:
        raise typer.Exit(1)


def _known_good(route: str) -> dict[str, Any] | None:
    """The route's known-good record: the JSON file smoke saved (fast), else the store."""
    import json

    from k2probe.core.config import known_good_path

    try:
        data = json.loads(known_good_path(route).read_text(encoding="utf-8"))
        if isinstance(data, dict) and "request" in data:
            return data
    except (OSError, ValueError):
        pass
    from k2probe.recording.store import Store

    store = Store()
    try:
        return store.known_good(route)
    finally:
        store.dispose()


@app.command()
def snippet(lang: Annotated[str, typer.Option("--lang", help=f"one of {', '.join(LANGS)}", metavar="TEXT")] = "python",
            route: RouteOpt = None,
            out: Annotated[Path | None, typer.Option("--out", help="write to this file", metavar="PATH")] = None) -> None:
    """The known-good request as runnable code that reads the key from the environment."""
    from k2probe.core.config import load_file, resolve_route
    from k2probe.diagnose.snippets import render as render_snippet

    if lang not in LANGS:
        raise UsageError(f"unknown language {lang!r}", fix=f"use one of: {', '.join(LANGS)}")
    name = resolve_route(route, load_file()).name
    record = _known_good(name)
    if record is None:
        raise UsageError(f"no known-good record for route {name!r}", fix="run `k2probe smoke` first")
    code = render_snippet(record, lang)
    if out:
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: the folder {out.parent} does not exist", fix="create it first")
        out.write_text(code, encoding="utf-8")
        render.notice(f"wrote {out}")
    else:
        sys.stdout.write(code)


@app.command()
def runs(limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000, help="how many runs", metavar="N")] = 20,
         as_json: JsonOpt = False) -> None:
    """The recorded runs, newest first."""
    from k2probe.recording.store import Store
    from k2probe.report.runs import print_runs

    store = Store()
    items = store.runs(limit)
    store.dispose()
    if as_json:
        render.emit_json({"runs": items})
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
        render.emit_json(detail)
    else:
        print_run(detail)


@app.command()
def review(run: Annotated[str, typer.Argument(help="a run id or its first characters", metavar="RUN")],
           accept: Annotated[bool | None, typer.Option("--accept/--reject", help="was the output accepted?")] = None,
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

    store = Store()
    detail = review_run(store, run, accepted=accept, repair_minutes=repair_minutes, rollback=rollback,
                        handoff=handoff, note=note, attempt=attempt, sample=sample)
    store.dispose()
    if as_json:
        render.emit_json(detail)
    else:
        render.notice(f"review recorded for run {detail['id'][:8]}: {'accepted' if accept else 'rejected'}")


@app.command()
def routes(as_json: JsonOpt = False) -> None:
    """The configured routes, keys masked."""
    from k2probe.core.config import all_routes

    items = [r.public() for r in all_routes()]
    if as_json:
        render.emit_json({"routes": items})
        return
    from rich.table import Table

    table = Table(title="routes")
    for column in ("name", "base_url", "model", "api_key", "key from"):
        table.add_column(column, overflow="fold")
    for r in items:
        base = r["base_url"] or "(built-in emulator)"
        table.add_row(r["name"], base, r["model"], r["api_key"] or "(none)", r["api_key_env"] or "–")
    render.out.print(table)


@app.command()
def emulator(host: Annotated[str, typer.Option(envvar="K2PROBE_EMULATOR_HOST", help="loopback address to serve on",
                                               metavar="TEXT")] = "127.0.0.1",
             port: Annotated[int, typer.Option(envvar="K2PROBE_EMULATOR_PORT", min=0, max=65535,
                                               help="0: any free port", metavar="N")] = 8765,
             api_key: Annotated[str, typer.Option("--api-key", envvar="K2PROBE_EMULATOR_KEY", help="the key it accepts",
                                                  metavar="TEXT")] = "sk-k2probe-emulator",
             personality: Annotated[str, typer.Option(help=f"one of {', '.join(PERSONALITIES)}",
                                                      metavar="TEXT")] = "moonshot",
             fault: Annotated[list[str] | None, typer.Option(
                 "--fault", help=f"KIND=RATE, KIND in {', '.join(FAULT_KINDS)}", metavar="TEXT")] = None,
             ttft_ms: Annotated[float, typer.Option("--ttft-ms", min=0, max=600_000, callback=_finite,
                                                   help="injected time to first token", metavar="NUMBER")] = 0.0,
             itl_ms: Annotated[float, typer.Option("--itl-ms", min=0, max=60_000, callback=_finite,
                                                  help="injected gap between tokens", metavar="NUMBER")] = 0.0,
             rpm: Annotated[int | None, typer.Option("--rpm", min=1, max=10_000_000,
                                                     help="requests per minute, then 429", metavar="N")] = None,
             max_concurrency: Annotated[int | None, typer.Option("--max-concurrency", min=1, max=1_000_000,
                                                                  help="concurrent requests, then 429", metavar="N")] = None,
             seed: Annotated[int, typer.Option("--seed", help="for the scripted slips and faults", metavar="N")] = 0,
             slip_rate: Annotated[float, typer.Option("--slip-rate", min=0, max=1, callback=_finite,
                                                     help="share of scripted agent steps that slip", metavar="NUMBER")
                                  ] = 0.0,
             wrong_rate: Annotated[float, typer.Option("--wrong-rate", min=0, max=1, callback=_finite,
                                                      help="share of HumanEval answers that are wrong",
                                                      metavar="NUMBER")] = 0.0,
             tool_fault_rate: Annotated[float, typer.Option("--tool-fault-rate", min=0, max=1, callback=_finite,
                                                           help="share of tool calls broken as vendors break them",
                                                           metavar="NUMBER")] = 0.0,
             workers: Annotated[int, typer.Option("--workers", envvar="K2PROBE_EMULATOR_WORKERS", min=1, max=64,
                                                  help="serve from this many processes (each with its own state)",
                                                  metavar="N")] = 1) -> None:
    """Serve the Kimi emulator on loopback."""
    from k2probe.emulator import EmulatorSettings, parse_faults, serve_forever

    try:
        settings = EmulatorSettings(api_key=api_key, personality=personality, faults=parse_faults(fault or []),
                                    ttft_ms=ttft_ms, itl_ms=itl_ms, rpm=rpm, max_concurrency=max_concurrency,
                                    seed=seed, slip_rate=slip_rate, wrong_rate=wrong_rate,
                                    tool_fault_rate=tool_fault_rate)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    render.notice(f"Kimi emulator ({personality}) on http://{host}:{port}/v1 — key from --api-key")
    serve_forever(settings, host=host, port=port, workers=workers)


@app.command()
def quickstart(route: RouteOpt = None, as_json: JsonOpt = False) -> None:
    """The whole seed path: doctor, smoke, streaming, screenshot review, agent task, snippets; then a report."""
    from k2probe.diagnose.quickstart import run_quickstart

    result = run_quickstart(route, quiet=as_json)
    if as_json:
        render.emit_json(result.as_json())
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print k2probe's version."""
    render.out.print(__version__)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"k2probe {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(show_version: Annotated[bool, typer.Option("--version", "-V", callback=_print_version, is_eager=True,
                                                     help="print the version and exit")] = False) -> None:
    """Test and evaluate coding-model APIs: Kimi K2.7 Code through any OpenAI-compatible route."""


def _command_of(exc: Exception) -> str:
    """`k2probe agent` for an error in agent's options: the command whose --help answers it."""
    names = []
    ctx = getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["k2probe", *reversed(names)])


def main() -> None:
    """Entry point: K2ProbeError becomes one line on stderr and its exit code; nothing else escapes as a traceback."""
    sys.stdout = RedactingStream(sys.stdout)
    sys.stderr = RedactingStream(sys.stderr)
    for name in KEY_ENVS:  # known before anything can print
        remember(os.environ.get(name))
    try:
        code = app(standalone_mode=False)  # a typer.Exit inside comes back as its code
        if isinstance(code, int) and code:
            sys.exit(code)
    except K2ProbeError as exc:
        render.err.print(f"k2probe: {exc.line()}", markup=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        render.err.print("k2probe: interrupted", markup=False)
        sys.exit(130)
    except typer.TyperException as exc:  # a usage error: one line, not click's box
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # (no arguments at all: the help was the answer)
            render.err.print(f"k2probe: {message} — see `{_command_of(exc)} --help`", markup=False)
        sys.exit(2)
    except OSError as exc:  # the filesystem said no: the user's terms, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        render.err.print(f"k2probe: {exc.strerror or exc}{where} — check the path, its permissions and free space",
                         markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        render.err.print("k2probe: interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # a bug: say it in one line, keep the traceback for those who ask
        if os.environ.get("K2PROBE_DEBUG"):
            raise
        render.err.print(f"k2probe: internal error: {type(exc).__name__}: {exc} (set K2PROBE_DEBUG=1 for the "
                         "traceback and report it)", markup=False)
        sys.exit(2)


