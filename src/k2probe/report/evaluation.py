"""The terminal view of an evaluation: a live progress bar while it runs, then the metrics per route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from k2probe.core.results import OVERALL, CostPerAccepted, Fallbacks, FirstSuccess, Rate, RouteMetrics, RunMetrics
from k2probe.report.terminal import err, out


def _samples(m: RouteMetrics) -> str:
    c = m.samples
    return f"{c.passed} / {c.failed} / {c.error} of {c.n}"


def _pass_at_k(m: RouteMetrics) -> str:
    """Every pass@k the epochs allow (k = 1 … epochs), each with its n."""
    if not m.pass_at_k:
        return "–"
    return ", ".join(f"pass@{k} {_pct(p.value)} (n={p.n_tasks} tasks)"
                     for k, p in sorted(m.pass_at_k.items(), key=lambda item: int(item[0])))


ROWS: list[tuple[str, Callable[[RouteMetrics], str]]] = [  # (label, how to read it from a route's metrics)
    ("samples (passed / failed / error)", _samples),
    ("accepted rate", lambda m: _rate(m.accepted_rate) + f", reviewed {m.accepted_rate.reviewed}"),
    ("pass@k (k = 1 … epochs)", _pass_at_k),
    ("error rate (infrastructure)", lambda m: _rate(m.error_rate)),
    ("first success", lambda m: _first(m.first_success)),
    ("retries", lambda m: f"{m.retries.total} ({_num(m.retries.per_call, '.2f')} per call, n={m.retries.n})"),
    ("tool-call failure rate", lambda m: _rate(m.tool_call_failure_rate)),
    ("latency avg / p95 per call", lambda m: f"{_num(m.latency_avg_ms.per_call)} / "
                                            f"{_num(m.latency_p95_ms.per_call)} ms (n={m.latency_avg_ms.n_calls})"),
    ("latency avg / p95 per sample", lambda m: f"{_num(m.latency_avg_ms.per_sample)} / "
                                              f"{_num(m.latency_p95_ms.per_sample)} ms "
                                              f"(n={m.latency_avg_ms.n_samples})"),
    ("tokens (prompt / completion / reasoning / cached)",
     lambda m: f"{m.total_tokens.prompt_tokens} / {m.total_tokens.completion_tokens} / "
               f"{m.total_tokens.reasoning_tokens} / {m.total_tokens.cached_tokens}"),
    ("cost per accepted task", lambda m: _cost(m.cost_per_accepted_usd)),
    ("human repair time", lambda m: f"{m.repair_minutes.total:.0f} min (n={m.repair_minutes.n} reviews)"),
    ("rollback or handoff rate", lambda m: _rate(m.rollback_handoff_rate)),
    ("requests sent to a fallback route (answered by)", lambda m: _fallbacks(m.fallbacks)),
    ("tool-call trigger F1 (precision / recall)", lambda m: _f1(m.suite_metrics.get("toolcalls"))),
    ("tool-call arguments valid (schema)", lambda m: _share(m.suite_metrics.get("toolcalls"), "schema_accuracy")),
]


def _fallbacks(moved: Fallbacks) -> str:
    answered = ", ".join(f"{route} {n}" for route, n in moved.answered_by_fallback.items())
    return f"{moved.requests} ({answered})" if answered else str(moved.requests)


def _f1(scores: dict[str, Any] | None) -> str:
    """A suite's trigger scores (suite_metrics: the suite's own figures, a plain mapping)."""
    if not scores or scores.get("f1") is None:
        return "–"
    return f"{scores['f1']:.3f} ({_num(scores['precision'], '.3f')} / {_num(scores['recall'], '.3f')}, n={scores['n']})"


def _share(scores: dict[str, Any] | None, key: str) -> str:
    if not scores or not isinstance(scores.get(key), dict) or scores[key].get("value") is None:
        return "–"
    return f"{_pct(scores[key]['value'])} (n={scores[key]['n']})"


def _num(value: float | None, spec: str = ".0f") -> str:
    return "–" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _rate(rate: Rate) -> str:
    if rate.value is None or rate.ci95 is None:
        return f"– (n={rate.n})"
    low, high = rate.ci95
    return f"{_pct(rate.value)} [{_pct(low)}, {_pct(high)}] (n={rate.n})"


def _first(first: FirstSuccess) -> str:
    if first.calls is None:
        return "none yet"
    return f"call {first.calls}, {first.seconds or 0.0:.1f} s after the start"


def _cost(cost: CostPerAccepted) -> str:
    value = cost.value
    if value == "unknown":
        return f"unknown ({cost.unpriced_calls} calls without a price)"
    if cost.total_cost_usd is None:
        return "– (no request made)"
    if value is None:
        return "– (nothing accepted)"
    sources = "; ".join(cost.price_sources) or "no price source"
    total = cost.total_cost_usd if isinstance(cost.total_cost_usd, float | int) else 0.0
    return f"${value:.6f} (${total:.6f} / {cost.accepted} accepted; {sources})"


def live(total: int, enabled: bool) -> Progress:
    """The progress bar: samples done of total, passed, failed, errors, cost so far, elapsed and ETA."""
    return Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("[green]{task.fields[passed]} passed[/] [red]{task.fields[failed]} failed[/] "
                               "[yellow]{task.fields[errors]} error[/] ${task.fields[cost]:.4f}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False, disable=not enabled)


def print_metrics(suite: str, run_id: str, metrics: RunMetrics, emulated: bool, iso: str) -> None:
    routes = list(metrics.routes) + ([OVERALL] if len(metrics.routes) > 1 else [])
    table = Table(title=f"eval {suite} — run {run_id[:8]} ({iso})")
    table.add_column("metric")
    for route in routes:
        table.add_column(route, overflow="fold")
    for label, read in ROWS:
        table.add_row(label, *(read(metrics[r]) for r in routes))
    out.print(table)
    if emulated:
        out.print("figures from the built-in emulator describe k2probe's pipeline, not a model", style="yellow")
