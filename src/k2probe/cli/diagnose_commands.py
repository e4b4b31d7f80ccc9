"""The guide's steps as commands: doctor, audit, smoke, chat, snippet, routes, quickstart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from k2probe.api import bounded
from k2probe.cli.app import (
    JsonOpt,
    RouteOpt,
    StrictOpt,
    TimeoutOpt,
    _failed,
    _notices,
    app,
    load_all_media,
    render,
)
from k2probe.core.errors import UsageError
from k2probe.diagnose.snippets import LANGS


@app.command()
def doctor(route: RouteOpt = None, param: Annotated[list[str] | None, typer.Option(
        "--param", help="a parameter your client sends by default, NAME=VALUE (repeatable)", metavar="TEXT")] = None,
        timeout: TimeoutOpt = 600.0, as_json: JsonOpt = False) -> None:
    """The diagnosis ladder for one route: key, base URL, model id, parameters, tool_choice, streaming, reasoning."""
    from k2probe.api import doctor as run_doctor
    from k2probe.core.config import parse_params
    from k2probe.core.redact import Redactor

    result = run_doctor(route, params=parse_params(param or []), timeout_s=timeout, on_notices=_notices)
    if as_json:
        render.emit_json(result.as_json(), Redactor())  # the route's key was remembered when its context opened
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
    from k2probe.api import audit as run_audit
    from k2probe.core.redact import Redactor
    from k2probe.report.audit import print_audit

    result = run_audit(route, baseline=baseline, timeout_s=timeout, on_notices=_notices)
    if as_json:
        render.emit_json(result.as_json(), Redactor())  # the route's key was remembered when its context opened
    else:
        print_audit(result)
    if result.verdict != "faithful":
        raise typer.Exit(1)


@app.command()
def smoke(route: RouteOpt = None, strict: StrictOpt = False, timeout: TimeoutOpt = 600.0,
          as_json: JsonOpt = False) -> None:
    """The guide's first code-review request; saves the known-good record."""
    from k2probe.api import command_contexts
    from k2probe.core.records import figures
    from k2probe.diagnose.smoke import run_smoke

    with command_contexts("smoke", route) as (routed, run):
        _notices(routed.notices)
        result = bounded(run_smoke(routed, run, strict=strict), timeout, "smoke")
    outcome = result.outcome
    if as_json:
        render.emit_json({"route": routed.route.name, "ok": result.known_good is not None,
                          "error": outcome.failure.line() if outcome.failure else None,
                          "answer": outcome.content, "known_good_path": result.path,
                          "changes": [c.line() for c in result.changes], **figures(outcome.last)}, run.redactor)
    else:
        render.changes(result.changes)
        if outcome.failure is None:
            render.out.print(render.shown(outcome.content or ""))
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
    from k2probe.api import command_contexts
    from k2probe.core.config import load_file, parse_params, resolve_route
    from k2probe.core.records import figures
    from k2probe.diagnose.chat import chat_request, run_chat

    if not prompt.strip():
        raise UsageError("the prompt is empty", fix='give the question, e.g. k2probe chat "Review this function"')
    params = parse_params(param or [])
    selected = resolve_route(route, load_file())
    media = load_all_media(route, image, video, fit=fit)
    with command_contexts("chat", selected) as (routed, run):
        _notices(routed.notices)
        request = chat_request(routed.route.model, prompt, system=system, stream=stream, max_tokens=max_tokens,
                               params={**routed.route.params, **params})
        live = render.LivePrinter() if stream and not as_json else None
        quiet = as_json
        result = bounded(run_chat(routed, run, request, strict=strict, listener=live,
                                      on_changes=None if quiet else render.changes, media=media,
                                      force_upload=upload, on_notes=None if quiet else render.media_notes),
                          timeout, "chat")
        if live:
            live.finish()
    outcome = result.outcome
    if as_json:
        render.emit_json({"route": routed.route.name, "ok": outcome.ok,
                          "error": outcome.failure.line() if outcome.failure else None, "answer": outcome.content,
                          "reasoning": outcome.reasoning, "changes": [c.line() for c in result.changes],
                          "media": [m.record() for m in media], "media_notes": result.media_notes,
                          "retries": outcome.retries, **figures(outcome.last)}, run.redactor)
    else:
        piped = not render.out.is_terminal  # stdout then gets the answer alone; reasoning and figures go to stderr
        side = render.err if piped else render.out
        if not stream and outcome.ok:
            if outcome.reasoning:
                side.print(render.shown(("thinking: " if piped else "") + outcome.reasoning, "dim"))
            render.out.print(render.shown(outcome.content or ""))
        side.print(render.figures_line(outcome.last), style="bold")
    if outcome.ok and routed.profile.reasoning_in_history and outcome.reasoning is None:
        render.notice(f"warning: no reasoning came back from {routed.route.model}, a thinking model: this route may "
                      "strip reasoning_content, which breaks tool loops (run `k2probe doctor`)")
    if outcome.failure is not None:
        raise _failed("chat failed", outcome.failure)


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
        from k2probe.core.files import check_output

        check_output(out, "--out")
        out.write_text(code, encoding="utf-8")
        render.notice(f"wrote {out}")
    else:
        sys.stdout.write(code)


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
def quickstart(route: RouteOpt = None, as_json: JsonOpt = False) -> None:
    """The whole seed path: doctor, smoke, streaming, screenshot review, agent task, snippets; then a report."""
    from k2probe.api import quickstart as run_quickstart
    from k2probe.report.quickstart import show_step

    result = run_quickstart(route, on_step=None if as_json else show_step, on_notices=_notices)
    if as_json:
        render.emit_json(result.as_json())
    else:
        render.notice(f"report: {result.report}")
    if not result.ok:
        raise typer.Exit(1)
