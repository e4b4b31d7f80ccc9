"""`k2probe view`: a Starlette app over the store, server-rendered with the reports' Jinja2 environment (every value
escaped). Runs → run → sample, each list filtered, sorted and paged in SQL with its filters in the URL; a review form
on the sample page writes what `k2probe review` writes."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from k2probe import __version__
from k2probe.core.errors import K2ProbeError
from k2probe.core.redact import StreamRedactor
from k2probe.core.results import Outcome, Run, RunMetrics, RunStatus
from k2probe.eval.evaluate import metrics_of_run
from k2probe.recording import browse
from k2probe.recording.store import Store
from k2probe.report.evaluation import ROWS
from k2probe.report.html import environment
from k2probe.report.pages import REPORTED
from k2probe.view.guard import check_form, form_token
from k2probe.view.transcript import call_rows, transcript

_env = environment()
MEASURED = ("eval", "proxy")  # runs whose samples get the guide's metrics (a proxy run's samples: its sessions)
_env.filters["datetime"] = lambda epoch: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
TEXT_LIMIT = 20_000  # characters of one message or answer shown before "full text"


def _int(request: Request, name: str, default: int, low: int = 0, high: int = 10**9) -> int:
    try:
        return max(low, min(high, int(request.query_params.get(name, default))))
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number") from None


def _page_size(request: Request) -> int:
    size = _int(request, "size", 50)
    return size if size in browse.PAGE_SIZES else 50


def _render(request: Request, template: str, **values: Any) -> HTMLResponse:
    session = request.scope.get("state", {}).get("session")
    html = _env.get_template(template).render(version=__version__, form_token=form_token(session) if session else "",
                                              **values)
    store: Store = request.app.state.store
    return HTMLResponse(store.redactor.text(html))


def _link(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one): filters live in the URL."""
    params = {**request.query_params, **{k: v for k, v in changes.items() if v is not None}}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
    return f"{request.url.path}?{urlencode(params)}" if params else request.url.path


def runs_page(request: Request) -> HTMLResponse:
    store: Store = request.app.state.store
    q = request.query_params
    sort = q.get("sort", "started")
    try:
        page = browse.list_runs(store, command=q.get("command") or None, status=q.get("status") or None,
                                text=q.get("q") or None, sort=sort, descending=q.get("order", "desc") == "desc",
                                offset=_int(request, "offset", 0), limit=_page_size(request))
    except K2ProbeError as exc:  # a sort the list does not have
        raise HTTPException(400, str(exc)) from None
    return _render(request, "view/runs.html.j2", title="runs", page=page, query=q, link=lambda **c: _link(request, **c),
                   statuses=[s.value for s in RunStatus], sorts=list(browse.RUN_SORTS))


def _run_of(request: Request) -> Any:
    store: Store = request.app.state.store
    try:
        return store.find_run(request.path_params["run"])
    except K2ProbeError as exc:
        raise HTTPException(404, str(exc)) from None


def _metrics(request: Request, run: Run) -> RunMetrics:
    """The run's metrics, computed once per state of the run (a review, a finished sample or a call changes it)."""
    store: Store = request.app.state.store
    cache: dict[str, tuple[tuple[object, ...], RunMetrics]] = request.app.state.metrics
    state = browse.run_state(store, run.id)
    held = cache.get(run.id)
    if held is None or held[0] != state:
        if len(cache) >= 32:
            cache.pop(next(iter(cache)))
        held = cache[run.id] = (state, metrics_of_run(store, run))
    return held[1]


def run_page(request: Request) -> HTMLResponse:
    store: Store = request.app.state.store
    run = _run_of(request)
    q = request.query_params
    figures = _metrics(request, run) if run.command in MEASURED else None
    routes = list(figures.routes) if figures else []
    try:
        samples = browse.list_samples(store, run.id, outcome=q.get("outcome") or None, task=q.get("task") or None,
                                      route=q.get("route") or None, text=q.get("q") or None,
                                      sort=q.get("sort", "task"), descending=q.get("order", "asc") == "desc",
                                      offset=_int(request, "offset", 0), limit=_page_size(request))
    except K2ProbeError as exc:  # a sort the list does not have
        raise HTTPException(400, str(exc)) from None
    table = [{"label": label, "cells": [read(figures[r]) for r in routes]} for label, read in ROWS] if figures else []
    attempts = _attempts(store, run.id) if run.command == "agent" else []
    calls = None
    if run.command != "eval":  # doctor, audit, smoke, chat, bench (--record-calls), proxy: the run is its calls
        offset = _int(request, "offset", 0)
        found = store.calls(run.id, offset=offset, limit=_page_size(request), with_messages=False)
        calls = browse.Page(call_rows(found, first=offset + 1), store.count_calls(run.id), offset, _page_size(request))
    return _render(request, "view/run.html.j2", attempts=attempts, calls=calls, has_page=run.command in REPORTED,
                   snapshots=_route_snapshots(run),
                   summary=json.dumps(run.summary or {}, indent=2, sort_keys=True, default=str),
                   title=f"run {run.id[:8]}", run=run, routes=routes,
                   table=table,
                   samples=samples, query=q, link=lambda **c: _link(request, **c),
                   outcomes=[o.value for o in Outcome], sample_routes=browse.sample_routes(store, run.id),
                   sorts=list(browse.SAMPLE_SORTS), live=run.status == RunStatus.RUNNING.value,
                   config=json.dumps(run.config, indent=2, sort_keys=True, default=str))


def sample_page(request: Request) -> HTMLResponse:
    store: Store = request.app.state.store
    run = _run_of(request)
    try:
        sample, length, before, after = browse.get_sample(store, run.id, request.path_params["sample"], TEXT_LIMIT)
    except K2ProbeError as exc:
        raise HTTPException(404, str(exc)) from None
    calls = store.calls(run.id, sample_id=sample.id, with_messages=False)  # the table needs no messages
    last = store.calls(run.id, sample_id=sample.id, offset=max(0, len(calls) - 1), limit=1)  # the transcript's
    reviews = [r for r in store.reviews(run.id) if r.sample_id == sample.id]
    findings = store.findings(run.id, sample.id) if run.command == "proxy" else []
    from k2probe.report.evaluation_html import sample_view

    attempts = _attempts(store, run.id, sample.id)
    suite = str((run.config.get("eval") or {}).get("suite") or "")
    view = sample_view(sample, suite, None, attempts[-1] if attempts else None)
    return _render(request, "view/sample.html.j2", view=view, suite=suite, findings=findings,
                   title=f"{sample.task_id} on {sample.route}", run=run,
                   sample=sample, before=before, after=after,
                   messages=transcript(last, sample, TEXT_LIMIT, answer_length=length),
                   calls=call_rows(calls), reviews=reviews, limit=TEXT_LIMIT)


def _attempts(store: Store, run_id: str, sample_id: str | None = None) -> list[Any]:
    """A run's agent attempts (or one sample's), as the static report shows them: the same view, the same macro."""
    from k2probe.recording import queries
    from k2probe.report.transcript import attempt_view

    attempts = sorted((a for a in store.attempts(run_id) if sample_id is None or a.sample_id == sample_id),
                      key=lambda a: a.started_at)
    steps = queries.attempt_steps(store, [a.id for a in attempts])
    return [attempt_view(a, steps[a.id]) for a in attempts]


def sample_text(request: Request) -> Response:
    """The whole answer of a sample, as text, streamed a megabyte at a time (the page shows its first characters)."""
    from starlette.responses import StreamingResponse

    store: Store = request.app.state.store
    run = _run_of(request)
    try:
        sample, _, _, _ = browse.get_sample(store, run.id, request.path_params["sample"], 0)
    except K2ProbeError as exc:
        raise HTTPException(404, str(exc)) from None
    def redacted() -> Iterator[str]:  # a secret split across two chunks is caught as one
        shown = StreamRedactor()
        for chunk in browse.answer_chunks(store, sample.id):
            yield shown.feed(chunk)
        yield shown.finish()

    return StreamingResponse(redacted(), media_type="text/plain; charset=utf-8",
                             headers={"content-security-policy": "default-src 'none'"})


async def review_post(request: Request) -> Response:
    """A person's verdict on one sample or agent attempt, written as `k2probe review --sample/--attempt` writes it."""
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    if not check_form(request.scope.get("state", {}).get("session"), str(form.get("form_token") or "")):
        return PlainTextResponse("this form is not from this viewer's page: reload the page and try again", 403)
    verdict = form.get("verdict")
    if verdict not in ("accept", "reject"):
        return PlainTextResponse("say accept or reject", 400)
    minutes_text = str(form.get("repair_minutes") or "").strip()
    try:
        minutes = float(minutes_text) if minutes_text else None
    except ValueError:
        return PlainTextResponse("repair minutes must be a number", 400)
    sample_id = str(form.get("sample") or "") or None
    attempt_id = str(form.get("attempt") or "") or None
    if (sample_id is None) == (attempt_id is None):
        return PlainTextResponse("review one sample or one attempt", 400)
    return await run_in_threadpool(_record_review, request, verdict == "accept", minutes, bool(form.get("rollback")),
                                   bool(form.get("handoff")), str(form.get("note") or "") or None, sample_id,
                                   attempt_id)


def _record_review(request: Request, accepted: bool, minutes: float | None, rollback: bool, handoff: bool,
                   note: str | None, sample_id: str | None, attempt_id: str | None) -> Response:
    from k2probe.report.runs import review

    store: Store = request.app.state.store
    run = _run_of(request)
    try:
        if sample_id is not None:
            browse.get_sample(store, run.id, sample_id, 0)
        review(store, run.id, accepted=accepted, repair_minutes=minutes, rollback=rollback, handoff=handoff,
               note=note, attempt=attempt_id, sample=sample_id)
    except K2ProbeError as exc:
        return PlainTextResponse(str(exc), 400)
    back = f"/runs/{run.id}/samples/{sample_id}" if sample_id else f"/runs/{run.id}#attempt-{attempt_id}"
    return RedirectResponse(back, 303)


def _route_snapshots(run: Run) -> dict[str, dict[str, Any]]:
    """The routes a run kept (name → route, profile and how it was chosen): an evaluation's several, another's one."""
    kept = run.config.get("routes")
    if isinstance(kept, dict):
        return {str(k): v for k, v in kept.items() if isinstance(v, dict)}
    route = run.config.get("route")
    if isinstance(route, dict):
        return {str(route.get("name") or run.route or ""): {k: run.config.get(k) for k in
                                                              ("route", "profile", "profile_how", "profile_source")}}
    return {}


def replay(request: Request) -> PlainTextResponse:
    """One of a sample's requests as runnable cURL, Python or Node.js (`k2probe snippet`'s renderer): the key read from
    the route's own variable, the URL the call was made to, every recorded value a literal of the language."""
    from k2probe.diagnose.snippets import LANGS, render

    store: Store = request.app.state.store
    run = _run_of(request)
    lang = request.path_params["lang"]
    if lang not in LANGS:
        raise HTTPException(404, f"replay as one of: {', '.join(LANGS)}")
    number = int(request.path_params["number"])
    calls = store.calls(run.id, sample_id=request.path_params["sample"], offset=max(0, number - 1), limit=1) \
        if number >= 1 else []
    if not calls or not isinstance(calls[0].get("request"), dict):
        raise HTTPException(404, "this sample has no such call")
    call = calls[0]
    route = (_route_snapshots(run).get(call["route"]) or {}).get("route") or {}
    record = {"request": {"model": call["model"], **call["request"]}, "route": call["route"], "model": call["model"],
              "api_key_env": route.get("api_key_env"), "base_url": route.get("base_url") or "",
              "emulated": bool(route.get("emulated"))}
    try:
        text = render(record, lang)
    except K2ProbeError as exc:
        raise HTTPException(400, str(exc)) from None
    return PlainTextResponse(store.redactor.text(text), headers={"content-security-policy": "default-src 'none'"})


def static_page(request: Request) -> HTMLResponse:
    """The run's self-contained page, by the renderer `k2probe report` writes it with (it runs no script)."""
    from k2probe.report.pages import run_page

    store: Store = request.app.state.store
    run = _run_of(request)
    try:
        html = run_page(store, run)
    except K2ProbeError as exc:
        raise HTTPException(404, str(exc)) from None
    return HTMLResponse(html, headers={"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                                  "img-src data:"})


def compare_page(request: Request) -> HTMLResponse:
    """Two runs (or one run's routes) per sample: regressions, fixes, unchanged (changed only unless asked), each pair
    side by side, with the statistics `k2probe compare` gives."""
    from k2probe.eval.compare import compare
    from k2probe.report.compare import difference_lines

    store: Store = request.app.state.store
    ids = request.query_params.getlist("run")
    if not 1 <= len(ids) <= 2:
        raise HTTPException(400, "tick one evaluation run with two routes, or two runs, to compare")
    try:
        result = compare(store, ids)
    except K2ProbeError as exc:
        raise HTTPException(400, str(exc)) from None
    show_all = request.query_params.get("all") == "1"
    routes = list(result.routes)
    table = [{"label": label, "cells": [read(result.routes[r]) for r in routes]} for label, read in ROWS]
    pairs = {route: [p for p in found if show_all or p.change != "same"] for route, found in result.pairs.items()}
    counts = {route: {c: sum(1 for p in found if p.change == c) for c in ("regression", "fix", "same")}
              for route, found in result.pairs.items()}
    return _render(request, "view/compare.html.j2", title="compare", result=result, routes=routes, table=table,
                   pairs=pairs, counts=counts, show_all=show_all, link=lambda **c: _link(request, **c),
                   lines=difference_lines(result))


def run_metrics_json(request: Request) -> JSONResponse:
    """The run's metrics, per route and overall, as `eval --json` gives them."""
    run = _run_of(request)
    if run.command not in MEASURED:
        raise HTTPException(404, "metrics are kept for evaluation and proxy runs")
    return JSONResponse({"run_id": run.id, "metrics": _metrics(request, run).model_dump(mode="json")})


def run_progress(request: Request) -> JSONResponse:
    """How far a run is: what the run page polls while it runs."""
    store: Store = request.app.state.store
    run = _run_of(request)
    return JSONResponse({"status": run.status, "outcomes": store.sample_outcomes(run.id)})


def samples_csv(request: Request) -> Response:
    store: Store = request.app.state.store
    run = _run_of(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["sample_id", "task_id", "route", "epoch", "outcome", "reason", "prompt_tokens",
                     "completion_tokens", "cost_usd", "latency_ms"])
    for s in store.samples(run.id, completions=False):
        writer.writerow([s.id, s.task_id, s.route, s.epoch, s.outcome.value, s.reason or "", s.usage.prompt_tokens,
                         s.usage.completion_tokens, "" if s.usage.cost_usd is None else s.usage.cost_usd,
                         "" if s.usage.latency_ms is None else s.usage.latency_ms])
    return Response(store.redactor.text(buffer.getvalue()), media_type="text/csv",
                    headers={"content-disposition": f'attachment; filename="samples-{run.id[:8]}.csv"'})


def samples_junit(request: Request) -> Response:
    """The run's samples as JUnit XML, as `eval --junit` writes them."""
    from k2probe.report.junit import junit_xml

    store: Store = request.app.state.store
    run = _run_of(request)
    suite = str((run.config.get("eval") or {}).get("suite") or run.command)
    document = junit_xml(suite, store.samples(run.id, completions=False)).decode()
    return Response(store.redactor.text(document), media_type="application/xml",
                    headers={"content-disposition": f'attachment; filename="junit-{run.id[:8]}.xml"'})


async def _not_found(request: Request, exc: Exception) -> HTMLResponse:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "the viewer could not show this page"
    html = _env.get_template("view/error.html.j2").render(version=__version__, title=str(status), detail=detail)
    return HTMLResponse(html, status)


def create_app(store: Store) -> Starlette:
    """The viewer over `store` (wrap it in `Guard` to serve it)."""
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    routes: list[BaseRoute] = [
        Route("/", runs_page), Route("/compare", compare_page),
        Route("/runs/{run}", run_page), Route("/runs/{run}/page", static_page),
        Route("/runs/{run}/metrics.json", run_metrics_json), Route("/runs/{run}/progress.json", run_progress),
        Route("/runs/{run}/samples.csv", samples_csv), Route("/runs/{run}/junit.xml", samples_junit),
        Route("/runs/{run}/review", review_post, methods=["POST"]),
        Route("/runs/{run}/samples/{sample}", sample_page),
        Route("/runs/{run}/samples/{sample}/answer.txt", sample_text),
        Route("/runs/{run}/samples/{sample}/calls/{number:int}/replay/{lang}", replay)]
    routes.append(Mount("/static", StaticFiles(packages=[("k2probe", "templates/view/static")]), name="static"))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found, 500: _not_found})
    app.state.store = store
    app.state.metrics = {}
    return app
