"""Looking at what was recorded: list runs, show one with its calls and attempts, record a human review."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from k2probe.core.errors import UsageError
from k2probe.core.results import Outcome, Run
from k2probe.recording.store import Store
from k2probe.report import terminal as render
from k2probe.report.documents import RunDetail


def run_detail(store: Store, prefix: str, *, limit: int = 200, offset: int = 0) -> RunDetail:
    """A run with a page of its calls (`calls_total` says how many there are), its attempts, its samples' outcomes
    and reviews; `accepted` is the latest review's verdict (None: not reviewed)."""
    run = store.find_run(prefix)
    reviews = store.reviews(run.id)
    return RunDetail.model_validate({
        **run.model_dump(), "calls_total": store.count_calls(run.id), "calls_offset": offset,
        "calls": store.calls(run.id, offset=offset, limit=limit), "attempts": store.attempts(run.id),
        "samples": store.sample_outcomes(run.id), "reviews": reviews,
        "accepted": reviews[-1].accepted if reviews else None})


def review(store: Store, prefix: str, *, accepted: bool | None, repair_minutes: float | None, rollback: bool,
           handoff: bool, note: str | None, attempt: str | None, sample: str | None = None) -> RunDetail:
    if accepted is None:
        raise UsageError("say whether the output was accepted", fix="pass --accept or --reject")
    if repair_minutes is not None and not (math.isfinite(repair_minutes) and repair_minutes >= 0):
        raise UsageError("the repair minutes must be a number of minutes, 0 or more",
                         fix="give the minutes a human spent fixing it")
    run = store.find_run(prefix)
    attempt_ids = [a.id for a in store.attempts(run.id)]
    if attempt is not None and attempt not in attempt_ids:
        raise UsageError(f"run {run.id[:8]} has no attempt {attempt!r}", fix=f"attempts: {attempt_ids or 'none'}")
    sample_id = None
    if sample is not None:  # a task id (e.g. HumanEval/3, epoch 0) or a sample id's first characters
        task, _, epoch = sample.partition("@")
        found = [s for s in store.samples(run.id)
                 if s.id.startswith(sample) or (s.task_id == task and str(s.epoch) == (epoch or "0"))]
        if len(found) != 1:
            raise UsageError(f"run {run.id[:8]} has {'no' if not found else 'more than one'} sample {sample!r}",
                             fix="give TASK_ID or TASK_ID@EPOCH, e.g. --sample HumanEval/3@0")
        sample_id = found[0].id
    store.add_review(run.id, attempt_id=attempt, sample_id=sample_id, accepted=accepted,
                     repair_minutes=repair_minutes, rollback=rollback, handoff=handoff, note=note)
    return run_detail(store, run.id, limit=0)


def _time(epoch: float | None) -> str:
    import datetime

    return "–" if epoch is None else datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _brief(key: str, value: Any) -> str:
    """One summary entry for the runs table: scalars as they are, a bench's steps by their rate, bulk left out."""
    if key == "samples" and isinstance(value, dict) and "n" in value:  # an evaluation's outcome counts
        return (f"{value.get('passed', 0)} passed / {value.get('failed', 0)} failed / {value.get('error', 0)} error "
                f"of {value.get('n', 0)}")
    if key == "routes" and isinstance(value, list):
        return "routes=" + ",".join(str(r) for r in value)
    if key == "cost_usd":
        return "cost unknown" if value == "unknown" else "" if value is None else f"${float(value):.4f}"
    if key == "emulated":
        return "on the emulator" if value else ""
    if key == "steps" and isinstance(value, list):
        return "steps=" + "; ".join(
            f"{'c=' + str(s['concurrency']) if 'concurrency' in s else str(s.get('rate')) + '/s'} "
            f"{s.get('rps', 0):.1f} req/s" for s in value if isinstance(s, dict))
    if isinstance(value, dict | list):
        return ""  # histograms, per-task tables: `show` has them
    return f"{key}={value}"


def print_runs(runs: list[Run]) -> None:
    table = Table(title="runs (newest first)")
    for column in ("id", "command", "route", "status", "started", "summary"):
        table.add_column(column, overflow="fold")
    for run in runs:
        summary = ", ".join(brief for k, v in (run.summary or {}).items() if (brief := _brief(k, v)))
        table.add_row(*(render.shown(cell) for cell in (run.id[:8], run.command, run.route or "", run.status,
                                                         _time(run.started_at), summary)))
    render.out.print(table)


def print_run(detail: RunDetail) -> None:
    verdict = {None: "not reviewed", True: "accepted", False: "rejected"}[detail.accepted]
    routes = (detail.summary or {}).get("routes")
    where = f"routes {', '.join(map(str, routes))}" if isinstance(routes, list) and routes else f"route {detail.route}"
    render.out.print(render.shown(f"run {detail.id} · {detail.command} · {where} · {detail.status} · {verdict}"))
    shown = len(detail.calls)
    first = detail.calls_offset + 1
    table = Table(title=f"calls {first}–{first + shown - 1} of {detail.calls_total}" if shown
                  else f"calls (none shown of {detail.calls_total})")
    for column in ("#", "purpose", "endpoint", "status", "error", "TTFT ms", "latency ms", "tokens in/out", "cost",
                   "media"):
        table.add_column(column, overflow="fold")
    for i, call in enumerate(detail.calls, first):
        media = "; ".join(f"{m['mime']} {m['width']}×{m['height']} {m['bytes']} B {m['delivery']}"
                          for m in call.media or [])
        cost = "unknown" if call.cost_usd is None else f"${call.cost_usd:.6f}"
        table.add_row(str(i), call.purpose or "", call.endpoint, str(call.status), call.error_type or "",
                      f"{call.ttft_ms:.0f}" if call.ttft_ms is not None else "",
                      f"{call.latency_ms:.0f}" if call.latency_ms is not None else "",
                      f"{call.prompt_tokens}/{call.completion_tokens}", cost, media)
    render.out.print(table)
    if detail.samples:
        render.out.print("samples: " + ", ".join(f"{n} {outcome}" for outcome, n in detail.samples.items()))
    for attempt in detail.attempts:
        verification = attempt.verification or {}
        iso = attempt.isolation or {}
        sandbox = f"sandbox {iso.get('sandbox', 'unknown')}" + (" (NOT isolated)" if iso.get("sandbox") == "none" else "")
        render.out.print(f"attempt {attempt.id[:8]} {attempt.task_id or ''}: {attempt.status} "
                         f"({verification.get('reason', '')}), ended {attempt.end_reason}, {attempt.steps} steps, "
                         f"{sandbox}")
        if attempt.status == Outcome.ERROR:  # the harness failed: the evidence, not a verdict on the model
            for line in [x for x in str(verification.get("output") or "").splitlines() if x.strip()][-8:]:
                render.out.print(f"    | {line}", style="dim", markup=False)
