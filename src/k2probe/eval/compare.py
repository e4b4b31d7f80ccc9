"""`k2probe compare RUN [RUN…]`: routes side by side on the same samples — each metric per route, the paired
difference with its 95% interval (McNemar for accepted rates, a paired bootstrap for latency), what the non-passes on
the worse route were, and which route is cheapest per *accepted* task, not per token."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from k2probe.core.errors import UsageError
from k2probe.core.stats import bootstrap_mean_difference, mcnemar_p, paired_rate_difference
from k2probe.eval import metrics as eval_metrics
from k2probe.recording.store import Store


@dataclass
class Comparison:
    run_ids: list[str]
    routes: dict[str, dict[str, Any]]
    differences: list[dict[str, Any]]
    cheapest_per_accepted: str | None
    unpriced: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_ids[0] if len(self.run_ids) == 1 else self.run_ids, "routes": self.routes,
                "differences": self.differences, "cheapest_per_accepted": self.cheapest_per_accepted,
                "unpriced": self.unpriced}


def _label(route: str, run_id: str, clash: bool) -> str:
    return f"{route}@{run_id[:8]}" if clash else route


def compare(store: Store, prefixes: list[str], reference: str | None = None) -> Comparison:
    runs = [store.find_run(p) for p in prefixes]
    for run in runs:
        if run["command"] != "eval":
            raise UsageError(f"run {run['id'][:8]} is a `{run['command']}` run", fix="compare evaluation runs")
    per_run = [(run, store.samples(run["id"])) for run in runs]
    # in how many of the runs each route appears: a route in two runs is told apart by its run
    seen: Counter[str] = Counter(route for _, samples in per_run for route in {s["route"] for s in samples})
    routes: dict[str, dict[str, Any]] = {}
    paired: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for run, samples in per_run:
        epochs = int(((run.get("config") or {}).get("eval") or {}).get("epochs") or 1)
        figures = eval_metrics.compute(store, run["id"], epochs)
        for route, m in figures.items():
            if route == eval_metrics.OVERALL:
                continue
            label = _label(route, run["id"], seen[route] > 1)
            routes[label] = m
            paired[label] = {(s["task_id"], s["epoch"]): s for s in samples if s["route"] == route}
    if len(routes) < 2:
        raise UsageError("nothing to compare: these runs hold one route", fix="eval with --route a --route b, or give "
                                                                               "two runs")
    labels = list(routes)
    if reference is not None and reference not in routes:
        raise UsageError(f"--reference {reference!r} is not one of the routes compared", fix=f"one of: {', '.join(labels)}")
    reference = reference or labels[0]
    differences = [_difference(reference, other, paired[reference], paired[other]) for other in labels
                   if other != reference]
    priced = {r: m["cost_per_accepted_usd"]["value"] for r, m in routes.items()}
    known = {r: v for r, v in priced.items() if isinstance(v, int | float)}
    cheapest = min(known, key=lambda r: known[r]) if known else None
    unpriced = [r for r, v in priced.items() if v == "unknown"]
    return Comparison([r["id"] for r in runs], routes, differences, cheapest, unpriced)


def _difference(first: str, second: str, a: dict[tuple[str, int], dict[str, Any]],
                b: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """`second` against `first` on the samples both have (paired by task and epoch)."""
    keys = sorted(set(a) & set(b))
    judged = [k for k in keys if a[k]["outcome"] in ("passed", "failed") and b[k]["outcome"] in ("passed", "failed")]
    only_first = sum(1 for k in judged if a[k]["outcome"] == "passed" and b[k]["outcome"] == "failed")
    only_second = sum(1 for k in judged if a[k]["outcome"] == "failed" and b[k]["outcome"] == "passed")
    rate = paired_rate_difference(only_first, only_second, len(judged))
    errors = sum(1 for k in keys if b[k]["outcome"] == "error") - sum(1 for k in keys if a[k]["outcome"] == "error")
    latency = bootstrap_mean_difference([float(b[k]["latency_ms"]) - float(a[k]["latency_ms"]) for k in keys
                                         if a[k].get("latency_ms") and b[k].get("latency_ms")])
    worse = [b[k] for k in keys if b[k]["outcome"] != "passed" and a[k]["outcome"] == "passed"]
    trigger = None
    decisions = [(a[k]["verification"], b[k]["verification"]) for k in keys
                 if _toolcall(a[k]) and _toolcall(b[k])]
    if decisions:  # the reference route's decisions taken as the labels (Kimi vendor verifier style)
        from k2probe.eval.toolscore import trigger_scores

        trigger = trigger_scores([{**mine, "expected": theirs["called"]} for theirs, mine in decisions])
    causes = Counter(_short(s.get("reason")) for s in worse)
    return {"route": second, "against": first, "pairs": len(keys), "judged_pairs": len(judged),
            "accepted_difference": None if rate is None else {"value": rate[0], "ci95": [rate[1], rate[2]],
                                                              "mcnemar_p": mcnemar_p(only_first, only_second),
                                                              "only_first_passed": only_first,
                                                              "only_second_passed": only_second},
            "error_difference": errors,
            "latency_difference_ms": None if latency is None else {"mean": latency[0], "ci95": [latency[1], latency[2]]},
            "causes": [{"reason": reason, "samples": n} for reason, n in causes.most_common(3)],
            "tool_trigger_vs_reference": trigger}


def _toolcall(sample: dict[str, Any]) -> bool:
    detail = sample.get("verification")
    return isinstance(detail, dict) and detail.get("kind") == "toolcall"


def _short(reason: Any) -> str:
    text = " ".join(str(reason or "no reason recorded").split())
    return text[:160]


def print_comparison(result: Comparison) -> None:
    from rich.table import Table

    from k2probe.report import terminal as render
    from k2probe.report.evaluation import ROWS

    table = Table(title="routes side by side")
    table.add_column("metric")
    for route in result.routes:
        table.add_column(route, overflow="fold")
    for label, read in ROWS:
        table.add_row(label, *(read(m) for m in result.routes.values()))
    render.out.print(table)
    for diff in result.differences:
        acc = diff["accepted_difference"]
        if acc is not None:
            render.out.print(f"{diff['route']} vs {diff['against']}: accepted {100 * acc['value']:+.1f} points "
                             f"[{100 * acc['ci95'][0]:+.1f}, {100 * acc['ci95'][1]:+.1f}] on {diff['judged_pairs']} "
                             f"paired samples (McNemar p={acc['mcnemar_p']:.3g}); errors {diff['error_difference']:+d}")
        else:
            render.out.print(f"{diff['route']} vs {diff['against']}: no paired judged samples; errors "
                             f"{diff['error_difference']:+d}")
        trigger = diff.get("tool_trigger_vs_reference")
        if trigger and trigger["f1"] is not None:
            render.out.print(f"    tool-call trigger against {diff['against']}'s decisions: F1 {trigger['f1']:.3f} "
                             f"(n={trigger['n']})")
        for cause in diff["causes"]:
            render.out.print(f"    {cause['samples']} sample(s) passed on {diff['against']} but not here: "
                             f"{cause['reason']}", markup=False)
    cheapest = result.cheapest_per_accepted
    render.out.print(f"cheapest per accepted task: {cheapest or 'cannot tell (no priced route accepted anything)'}"
                     + (f"; not priced: {', '.join(result.unpriced)}" if result.unpriced else ""))
