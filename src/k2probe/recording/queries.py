"""Read-side queries the report and metrics need, aggregated in SQL where the rows are many (calls).

A call's `route` is the route that answered it; a call that went to a fallback also names the route it was made for
(`fallback_from`). Per-route figures group calls by the route they were made for (`made_for`), so a sample answered by a
fallback keeps its tokens, latency and cost on its own route; who answered is read from `route`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from k2probe.recording.schema import AttemptRow, CallRow, ReviewRow, RunRow, StepRow
from k2probe.recording.store import Store


@dataclass
class CallTotals:
    """One route's calls (fallbacks included): how many, retried, failed; tokens; dollars and unpriced calls."""

    calls: int = 0
    retries: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    price_sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FirstCall:
    """Calls, and seconds from the run's start, until a route's first successful call (None: none yet)."""

    calls: int | None
    seconds: float | None


@dataclass(frozen=True)
class SampleReview:
    """A review, with the sample it judges (directly, or through its attempt; None: the whole run)."""

    sample_id: str | None
    accepted: bool
    repair_minutes: float | None
    rollback: bool
    handoff: bool


@dataclass
class ToolUse:
    """Tool calls agent attempts made on a route, the failed ones, and those by type."""

    tool_calls: int = 0
    failed: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


@dataclass
class Moved:
    """A route's requests sent to a fallback route, and {fallback route: calls of them it answered}."""

    requests: int = 0
    answered_by: dict[str, int] = field(default_factory=dict)


def made_for() -> ColumnElement[str]:
    """The route a call was made for, whoever answered it (SQL)."""
    return func.coalesce(CallRow.fallback_from, CallRow.route)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows meet `condition` (PostgreSQL has no sum of booleans)."""
    return func.sum(case((condition, 1), else_=0))


def call_totals(store: Store, run_id: str) -> dict[str, CallTotals]:
    """Per route the calls were made for (fallbacks included): calls, retries, failed calls, tokens, cost (and how
    many priced calls lacked a price)."""
    store.flush()
    c = CallRow
    query = (select(made_for(), func.count(), _count(c.attempt > 0), _count(c.error_type.is_not(None)),
                    func.sum(c.prompt_tokens), func.sum(c.completion_tokens), func.sum(c.reasoning_tokens),
                    func.sum(c.cached_tokens), func.sum(c.cost_usd),
                    _count((c.cost_usd.is_(None)) & ((c.prompt_tokens + c.completion_tokens) > 0)))
             .where(c.run_id == run_id).group_by(made_for()))
    with Session(store.engine) as session:
        rows = session.execute(query).all()
        sources = session.execute(select(made_for(), c.price_source).where(c.run_id == run_id,
                                                                        c.price_source.is_not(None))
                                  .distinct()).all()
    totals: dict[str, CallTotals] = {}
    for route, calls, retries, failed, prompt, completion, reasoning, cached, cost, unpriced in rows:
        totals[route] = CallTotals(calls=int(calls), retries=int(retries or 0), failed_calls=int(failed or 0),
                                   prompt_tokens=int(prompt or 0), completion_tokens=int(completion or 0),
                                   reasoning_tokens=int(reasoning or 0), cached_tokens=int(cached or 0),
                                   cost_usd=float(cost or 0.0), unpriced_calls=int(unpriced or 0))
    for route, source in sources:
        if route in totals and source is not None:
            totals[route].price_sources.append(source)
    return totals


def call_latencies(store: Store, run_id: str) -> dict[str, list[float]]:
    """Per route the calls were made for, the end-to-end latency of every answered call, a fallback's included (one
    float column, not whole rows)."""
    store.flush()
    query = select(made_for(), CallRow.latency_ms).where(CallRow.run_id == run_id, CallRow.latency_ms.is_not(None),
                                                             CallRow.error_type.is_(None))
    with Session(store.engine) as session:
        out: dict[str, list[float]] = {}
        for route, latency in session.execute(query):
            out.setdefault(route, []).append(float(latency or 0.0))
        return out


def first_success(store: Store, run_id: str) -> dict[str, FirstCall]:
    """Per route the calls were made for: how many calls, and how many seconds from the run's start, until the first
    successful call (a fallback's answer counts)."""
    store.flush()
    with Session(store.engine) as session:
        run = session.get(RunRow, run_id)
        start = run.started_at if run else 0.0
        out: dict[str, FirstCall] = {}
        for route in session.scalars(select(made_for()).where(CallRow.run_id == run_id).distinct()):
            first = session.execute(select(CallRow.id, CallRow.started_at, CallRow.latency_ms)
                                    .where(CallRow.run_id == run_id, made_for() == route,
                                           CallRow.error_type.is_(None), CallRow.status == 200)
                                    .order_by(CallRow.id).limit(1)).first()
            if first is None:
                out[route] = FirstCall(None, None)
                continue
            before = session.scalar(select(func.count()).where(CallRow.run_id == run_id, made_for() == route,
                                                               CallRow.id <= first.id))
            done = first.started_at + (first.latency_ms or 0.0) / 1000.0
            out[route] = FirstCall(int(before or 0), max(0.0, done - start))
        return out


def reviews_by_sample(store: Store, run_id: str) -> list[SampleReview]:
    """Reviews of the run, newest last, with the sample they judge (directly, or through the attempt)."""
    store.flush()
    with Session(store.engine) as session:
        attempt_sample = dict(session.execute(select(AttemptRow.id, AttemptRow.sample_id)
                                              .where(AttemptRow.run_id == run_id)).all())
        rows = session.scalars(select(ReviewRow).where(ReviewRow.run_id == run_id).order_by(ReviewRow.id)).all()
        return [SampleReview(r.sample_id or attempt_sample.get(r.attempt_id or ""), r.accepted, r.repair_minutes,
                             r.rollback, r.handoff) for r in rows]


def tool_failures(store: Store, run_id: str) -> dict[str, ToolUse]:
    """Per route: tool calls made by agent attempts and the failed ones by type."""
    store.flush()
    with Session(store.engine) as session:
        rows = session.execute(select(AttemptRow.route, AttemptRow.failures).where(AttemptRow.run_id == run_id)).all()
        steps = session.execute(select(AttemptRow.route, StepRow.record).join(AttemptRow,
                                                                              StepRow.attempt_id == AttemptRow.id)
                                .where(AttemptRow.run_id == run_id)).all()  # one query, not one per attempt
    out: dict[str, ToolUse] = {}
    for route, failures in rows:
        entry = out.setdefault(route, ToolUse())
        for kind, count in (failures or {}).items():
            entry.by_type[kind] = entry.by_type.get(kind, 0) + int(count)
            entry.failed += int(count)
    for route, record in steps:
        out[route].tool_calls += len((record or {}).get("tools") or [])
    return out


def fallbacks(store: Store, run_id: str) -> dict[str, Moved]:
    """Per route that could not answer: `requests` it sent to a fallback route (first attempts there, counted once),
    and `answered_by` {fallback route: calls of its requests that route answered}."""
    store.flush()
    c = CallRow
    moved = (select(c.fallback_from, func.count()).where(c.run_id == run_id, c.fallback_from.is_not(None),
                                                          c.attempt == 0).group_by(c.fallback_from))
    answered = (select(c.fallback_from, c.route, func.count())
                .where(c.run_id == run_id, c.fallback_from.is_not(None), c.error_type.is_(None))
                .group_by(c.fallback_from, c.route))
    out: dict[str, Moved] = {}
    with Session(store.engine) as session:
        for route, n in session.execute(moved).all():
            out.setdefault(str(route), Moved()).requests = int(n)
        for route, by, n in session.execute(answered).all():
            out.setdefault(str(route), Moved()).answered_by[str(by)] = int(n)
    return out


def attempt_steps(store: Store, attempt_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each attempt's stored step records, in order (agent/loop.py step_dict: the assistant message, the tool calls
    with their arguments and results, tokens, latency), by attempt id."""
    store.flush()
    out: dict[str, list[dict[str, Any]]] = {attempt_id: [] for attempt_id in attempt_ids}
    if not attempt_ids:
        return out
    with Session(store.engine) as session:
        rows = session.execute(select(StepRow.attempt_id, StepRow.record).where(StepRow.attempt_id.in_(attempt_ids))
                               .order_by(StepRow.attempt_id, StepRow.index, StepRow.id)).all()
    for attempt_id, record in rows:
        out[attempt_id].append(dict(record or {}))
    return out
