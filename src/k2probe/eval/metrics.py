"""The guide's nine metrics (and pass@k, error rate), defined once and computed from the store, per route and overall.

Every figure carries its n; rates carry a 95% Wilson interval. `error` samples (the harness, the machine or the route
failed) are never counted as the model's failures: they are out of accepted_rate and counted in error_rate. A call a
fallback route answered counts on the route it was made for (its sample's), and says which route answered it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from k2probe.core.results import (
    OVERALL,
    AcceptedRate,
    CostPerAccepted,
    Fallbacks,
    FirstSuccess,
    Latency,
    Outcome,
    PassAtK,
    Rate,
    RepairMinutes,
    Retries,
    RouteMetrics,
    RunMetrics,
    Sample,
    SampleCounts,
    ToolFailureRate,
    TotalTokens,
)
from k2probe.core.stats import pass_at_k, percentile, wilson
from k2probe.recording import queries
from k2probe.recording.store import Store

SuiteMetrics = Callable[[list[Sample]], dict[str, Any]]  # a suite's own figures of one route's samples

__all__ = ["OVERALL", "SuiteMetrics", "compute"]


def _rate(hits: int, n: int) -> Rate:
    return Rate(value=hits / n if n else None, n=n, ci95=wilson(hits, n))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compute(store: Store, run_id: str, epochs: int = 1, extra: SuiteMetrics | None = None, *,
            samples: list[Sample] | None = None) -> RunMetrics:
    """{route: its metrics, "overall": the whole run's} for one evaluation run. `extra` adds a suite's own figures
    per route (`suite_metrics`); `samples`, when the caller has read them already, saves reading them again."""
    samples = store.samples(run_id) if samples is None else samples
    totals = queries.call_totals(store, run_id)
    latencies = queries.call_latencies(store, run_id)
    firsts = queries.first_success(store, run_id)
    tools = queries.tool_failures(store, run_id)
    moved = queries.fallbacks(store, run_id)
    reviews: dict[str, queries.SampleReview] = {}
    for review in queries.reviews_by_sample(store, run_id):  # the latest review of a sample is its verdict
        if review.sample_id:
            reviews[review.sample_id] = review
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.route].append(sample)
    if samples:
        groups[OVERALL] = list(samples)
    out: dict[str, RouteMetrics] = {}
    for route, group in groups.items():
        routes = list(totals) if route == OVERALL else [route]
        figures = _metrics(group, reviews, [totals[r] for r in routes if r in totals],
                           [v for r in routes for v in latencies.get(r, [])],
                           [firsts[r] for r in routes if r in firsts], [tools[r] for r in routes if r in tools],
                           epochs)
        figures.fallbacks = _fallbacks([moved[r] for r in (list(moved) if route == OVERALL else [route]) if r in moved])
        if extra is not None:
            figures.suite_metrics = extra(group)
        out[route] = figures
    return RunMetrics(out)


def _fallbacks(moved: list[queries.Moved]) -> Fallbacks:
    """Requests sent to a fallback route, and the calls each fallback route answered ({} when none did)."""
    answered: dict[str, int] = defaultdict(int)
    for entry in moved:
        for by, n in entry.answered_by.items():
            answered[by] += n
    return Fallbacks(requests=sum(m.requests for m in moved), answered_by_fallback=dict(sorted(answered.items())))


def _metrics(samples: list[Sample], reviews: dict[str, queries.SampleReview], totals: list[queries.CallTotals],
             latencies: list[float], firsts: list[queries.FirstCall], tools: list[queries.ToolUse],
             epochs: int) -> RouteMetrics:
    done = [s for s in samples if s.outcome is not Outcome.PENDING]
    # judged: by the verification, or by a person where nothing verified it (a proxy session stays pending)
    judged = [s for s in samples if s.outcome.judged or (s.outcome is Outcome.PENDING and s.id in reviews)]
    accepted = 0
    for s in judged:
        review = reviews.get(s.id)
        accepted += review.accepted if review else s.outcome is Outcome.PASSED
    errors = sum(1 for s in done if s.outcome is Outcome.ERROR)
    reviewed = [reviews[s.id] for s in samples if s.id in reviews]
    calls = sum(t.calls for t in totals)
    retries = sum(t.retries for t in totals)
    cost = sum(t.cost_usd for t in totals)
    unpriced = sum(t.unpriced_calls for t in totals)
    tool_calls = sum(t.tool_calls for t in tools)
    tool_failed = sum(t.failed for t in tools)
    by_type: dict[str, int] = defaultdict(int)
    for t in tools:
        for kind, count in t.by_type.items():
            by_type[kind] += count
    seconds = [f.seconds for f in firsts if f.seconds is not None]
    first_calls = [f.calls for f in firsts if f.calls is not None]
    repairs = [r.repair_minutes for r in reviewed if r.repair_minutes is not None]
    per_sample = [float(s.usage.latency_ms) for s in done if s.usage.latency_ms]
    tokens = TotalTokens(prompt_tokens=sum(t.prompt_tokens for t in totals),
                         completion_tokens=sum(t.completion_tokens for t in totals),
                         reasoning_tokens=sum(t.reasoning_tokens for t in totals),
                         cached_tokens=sum(t.cached_tokens for t in totals), n=calls)
    tokens.total = tokens.prompt_tokens + tokens.completion_tokens
    tool_rate = _rate(tool_failed, tool_calls)
    accepted_rate = _rate(accepted, len(judged))
    return RouteMetrics(
        samples=SampleCounts(n=len(samples), done=len(done), passed=sum(s.outcome is Outcome.PASSED for s in done),
                             failed=sum(s.outcome is Outcome.FAILED for s in done), error=errors),
        first_success=FirstSuccess(calls=min(first_calls) if first_calls else None,
                                   seconds=min(seconds) if seconds else None),
        accepted_rate=AcceptedRate(**accepted_rate.model_dump(), reviewed=len(reviewed)),
        retries=Retries(total=retries, per_call=retries / calls if calls else None, n=calls),
        tool_call_failure_rate=ToolFailureRate(**tool_rate.model_dump(), by_type=dict(by_type)),
        repair_minutes=RepairMinutes(total=sum(repairs), mean=sum(repairs) / len(repairs) if repairs else None,
                                     n=len(repairs)),
        latency_avg_ms=Latency(per_call=_mean(latencies), per_sample=_mean(per_sample), n_calls=len(latencies),
                               n_samples=len(per_sample)),
        latency_p95_ms=Latency(per_call=percentile(latencies, 95), per_sample=percentile(per_sample, 95),
                               n_calls=len(latencies), n_samples=len(per_sample)),
        total_tokens=tokens,
        cost_per_accepted_usd=CostPerAccepted(
            value="unknown" if unpriced else (cost / accepted if accepted and calls else None),
            total_cost_usd="unknown" if unpriced else (cost if calls else None), accepted=accepted,
            unpriced_calls=unpriced,
            price_sources=sorted({s for t in totals for s in t.price_sources})),
        rollback_handoff_rate=_rate(sum(1 for r in reviewed if r.rollback or r.handoff), len(reviewed)),
        pass_at_k=_pass_at_k(done, epochs),
        error_rate=_rate(errors, len(done)),
    )


def _pass_at_k(samples: list[Sample], epochs: int) -> dict[str, PassAtK]:
    """pass@k for k ≤ epochs, averaged over tasks with at least k judged samples (errors left out)."""
    per_task: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for s in samples:
        if s.outcome.judged:
            per_task[(s.route, s.task_id)].append(s.outcome is Outcome.PASSED)
    out: dict[str, PassAtK] = {}
    for k in range(1, max(1, epochs) + 1):
        values = [pass_at_k(len(v), sum(v), k) for v in per_task.values() if len(v) >= k]
        out[str(k)] = PassAtK(value=sum(values) / len(values) if values else None, n_tasks=len(values))
    return out
