"""The guide's nine metrics (and pass@k, error rate), defined once and computed from the store, per route and overall.

Every figure carries its n; rates carry a 95% Wilson interval. `error` samples (the harness, the machine or the route
failed) are never counted as the model's failures: they are out of accepted_rate and counted in error_rate. A call a
fallback route answered counts on the route it was made for (its sample's), and says which route answered it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from k2probe.core.stats import pass_at_k, percentile, wilson
from k2probe.recording import queries
from k2probe.recording.store import Store

OVERALL = "overall"


def _rate(hits: int, n: int) -> dict[str, Any]:
    interval = wilson(hits, n)
    return {"value": hits / n if n else None, "n": n, "ci95": list(interval) if interval else None}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compute(store: Store, run_id: str, epochs: int = 1,
            extra: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """{route or "overall": metrics} for one evaluation run; `extra` (the suite's metrics) fills each route's
    `suite_metrics` from that route's samples."""
    samples = store.samples(run_id)
    totals = queries.call_totals(store, run_id)
    latencies = queries.call_latencies(store, run_id)
    firsts = queries.first_success(store, run_id)
    tools = queries.tool_failures(store, run_id)
    moved = queries.fallbacks(store, run_id)
    reviews: dict[str, dict[str, Any]] = {}
    for review in queries.reviews_by_sample(store, run_id):  # the latest review of a sample is its verdict
        if review["sample_id"]:
            reviews[review["sample_id"]] = review
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        groups[sample["route"]].append(sample)
        groups[OVERALL].append(sample)
    out: dict[str, dict[str, Any]] = {}
    for route, group in groups.items():
        routes = list(totals) if route == OVERALL else [route]
        out[route] = _metrics(group, reviews, [totals[r] for r in routes if r in totals],
                              [v for r in routes for v in latencies.get(r, [])],
                              [firsts[r] for r in routes if r in firsts], [tools[r] for r in routes if r in tools],
                              epochs)
        out[route]["suite_metrics"] = extra(group) if extra is not None else {}
        out[route]["fallbacks"] = _fallbacks([moved[r] for r in (list(moved) if route == OVERALL else [route])
                                              if r in moved])
    return out


def _fallbacks(moved: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests sent to a fallback route, and the calls each fallback route answered ({} when none did)."""
    answered: dict[str, int] = defaultdict(int)
    for entry in moved:
        for by, n in entry["answered_by"].items():
            answered[by] += n
    return {"requests": sum(m["requests"] for m in moved), "answered_by_fallback": dict(sorted(answered.items()))}


def samples(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's samples, each with `answered_by`: the routes that answered its calls (its own, or a fallback)."""
    answered = queries.answering_routes(store, run_id)
    return [{**s, "answered_by": answered.get(s["id"], [])} for s in store.samples(run_id)]


def _metrics(samples: list[dict[str, Any]], reviews: dict[str, dict[str, Any]], totals: list[dict[str, Any]],
             latencies: list[float], firsts: list[dict[str, Any]], tools: list[dict[str, Any]],
             epochs: int) -> dict[str, Any]:
    done = [s for s in samples if s["outcome"] != "pending"]
    judged = [s for s in done if s["outcome"] in ("passed", "failed")]
    accepted = 0
    for s in judged:
        review = reviews.get(s["id"])
        accepted += bool(review["accepted"]) if review else s["outcome"] == "passed"
    errors = sum(1 for s in done if s["outcome"] == "error")
    reviewed = [reviews[s["id"]] for s in done if s["id"] in reviews]
    calls = sum(t["calls"] for t in totals)
    retries = sum(t["retries"] for t in totals)
    cost = sum(t["cost_usd"] for t in totals)
    unpriced = sum(t["unpriced_calls"] for t in totals)
    tool_calls = sum(t["tool_calls"] for t in tools)
    tool_failed = sum(t["failed"] for t in tools)
    by_type: dict[str, int] = defaultdict(int)
    for t in tools:
        for kind, count in t["by_type"].items():
            by_type[kind] += count
    seconds = [f["seconds"] for f in firsts if f["seconds"] is not None]
    first_calls = [f["calls"] for f in firsts if f["calls"] is not None]
    repairs = [r["repair_minutes"] for r in reviewed if r["repair_minutes"] is not None]
    per_sample = [float(s["latency_ms"]) for s in done if s.get("latency_ms")]
    tokens = {k: sum(t[k] for t in totals) for k in ("prompt_tokens", "completion_tokens", "reasoning_tokens",
                                                     "cached_tokens")}
    return {
        "samples": {"n": len(samples), "done": len(done), "passed": sum(s["outcome"] == "passed" for s in done),
                    "failed": sum(s["outcome"] == "failed" for s in done), "error": errors},
        "first_success": {"calls": min(first_calls) if first_calls else None,
                          "seconds": min(seconds) if seconds else None},
        "accepted_rate": {**_rate(accepted, len(judged)), "reviewed": len(reviewed)},
        "retries": {"total": retries, "per_call": retries / calls if calls else None, "n": calls},
        "tool_call_failure_rate": {**_rate(tool_failed, tool_calls), "by_type": dict(by_type)},
        "repair_minutes": {"total": sum(repairs), "mean": sum(repairs) / len(repairs) if repairs else None,
                           "n": len(repairs)},
        "latency_avg_ms": {"per_call": _mean(latencies), "per_sample": _mean(per_sample),
                           "n_calls": len(latencies), "n_samples": len(per_sample)},
        "latency_p95_ms": {"per_call": percentile(latencies, 95), "per_sample": percentile(per_sample, 95),
                           "n_calls": len(latencies), "n_samples": len(per_sample)},
        "total_tokens": {**tokens, "total": tokens["prompt_tokens"] + tokens["completion_tokens"], "n": calls},
        "cost_per_accepted_usd": {
            "value": "unknown" if unpriced else (cost / accepted if accepted else None),
            "total_cost_usd": "unknown" if unpriced else cost, "accepted": accepted, "unpriced_calls": unpriced,
            "price_sources": sorted({s for t in totals for s in t["price_sources"]})},
        "rollback_handoff_rate": _rate(sum(1 for r in reviewed if r["rollback"] or r["handoff"]), len(reviewed)),
        "pass_at_k": _pass_at_k(done, epochs),
        "error_rate": _rate(errors, len(done)),
    }



def _pass_at_k(samples: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """pass@k for k ≤ epochs, averaged over tasks with at least k judged samples (errors left out)."""
    per_task: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for s in samples:
        if s["outcome"] in ("passed", "failed"):
            per_task[(s["route"], s["task_id"])].append(s["outcome"] == "passed")
    out: dict[str, Any] = {}
    for k in range(1, max(1, epochs) + 1):
        values = [pass_at_k(len(v), sum(v), k) for v in per_task.values() if len(v) >= k]
        out[str(k)] = {"value": sum(values) / len(values) if values else None, "n_tasks": len(values)}
    return out
