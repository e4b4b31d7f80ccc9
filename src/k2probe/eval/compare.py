"""`k2probe compare RUN [RUN…]`: routes side by side on the same samples — each metric per route, the paired
difference with its 95% interval (for accepted rates the exact McNemar test and the interval dual to it, so they never
disagree; a paired bootstrap for latency), what the non-passes on the worse route were, and which route is cheapest
per *accepted* task, not per token (a tie is said as one)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import PrivateAttr

from k2probe.core.errors import UsageError
from k2probe.core.results import Model, Outcome, RouteMetrics, Sample
from k2probe.core.stats import bootstrap_mean_difference, mcnemar_exact_difference, mcnemar_p
from k2probe.eval.evaluate import metrics_of_run
from k2probe.recording import queries
from k2probe.recording.store import Store

METHOD = ("exact McNemar test; 95% interval: Clopper-Pearson on the discordant pairs, mapped onto the difference "
          "(the two agree: the interval excludes 0 exactly when p < 0.05)")


class AcceptedDifference(Model):
    """The second route's accepted rate minus the first's on the paired judged samples, with the exact McNemar p and
    the interval dual to it. `only_first`/`only_second`: pairs only that route got accepted."""

    value: float
    ci95: tuple[float, float]
    mcnemar_p: float
    only_first: int
    only_second: int
    method: str = METHOD


class LatencyDifference(Model):
    """Mean per-sample latency difference (second minus first), paired bootstrap 95% interval."""

    mean: float
    ci95: tuple[float, float]


class Cause(Model):
    reason: str
    samples: int


class Difference(Model):
    """`route` measured against `against` on the samples both have (paired by task and epoch)."""

    route: str
    against: str
    pairs: int
    judged_pairs: int
    reviewed_pairs: int  # judged pairs where a person's review decided one side's acceptance
    accepted_difference: AcceptedDifference | None  # accepted as the table counts it: a review, else the verification
    verified_difference: AcceptedDifference | None  # the verification's verdicts alone
    error_difference: int
    latency_difference_ms: LatencyDifference | None
    causes: list[Cause]
    tool_trigger_vs_reference: dict[str, Any] | None  # trigger scores against the reference's decisions


class Pair(Model):
    """One task and epoch on two routes: `change` says what the second route did to its acceptance."""

    task_id: str
    epoch: int
    first: Sample
    second: Sample
    change: str  # "regression" (accepted on the first only), "fix" (on the second only), "same"


class Comparison(Model):
    """What `compare` found; `model_dump(mode="json")` is the `compare --json` document; `pairs` (route → its pairs
    against the reference, for the viewer) is kept out of it."""

    run_id: str | list[str]  # one run, or the runs compared
    routes: dict[str, RouteMetrics]
    differences: list[Difference]
    cheapest_per_accepted: str | None  # None on a tie (then `cheapest_tied` names the routes) or with nothing priced
    cheapest_tied: list[str]
    unpriced: list[str]

    _pairs: dict[str, list[Pair]] = PrivateAttr(default_factory=dict)

    @property
    def pairs(self) -> dict[str, list[Pair]]:
        return self._pairs

    @property
    def run_ids(self) -> list[str]:
        return [self.run_id] if isinstance(self.run_id, str) else list(self.run_id)


def _label(route: str, run_id: str, clash: bool) -> str:
    return f"{route}@{run_id[:8]}" if clash else route


def compare(store: Store, prefixes: list[str], reference: str | None = None) -> Comparison:
    runs = [store.find_run(p) for p in prefixes]
    for run in runs:
        if run.command != "eval":
            raise UsageError(f"run {run.id[:8]} is a `{run.command}` run", fix="compare evaluation runs")
    suites = {str((run.config.get("eval") or {}).get("suite") or "") for run in runs}
    if len(suites) > 1:
        raise UsageError(f"these runs evaluated different suites ({', '.join(sorted(suites))}): their samples do not pair",
                         fix="compare runs of one suite")
    per_run = [(run, store.samples(run.id)) for run in runs]
    reviewed: dict[str, bool] = {}  # sample id → the latest review's verdict
    for run in runs:
        reviewed.update({r.sample_id: r.accepted for r in queries.reviews_by_sample(store, run.id) if r.sample_id})
    # in how many of the runs each route appears: a route in two runs is told apart by its run
    seen: Counter[str] = Counter(route for _, samples in per_run for route in {s.route for s in samples})
    routes: dict[str, RouteMetrics] = {}
    paired: dict[str, dict[tuple[str, int], Sample]] = {}
    for run, samples in per_run:
        figures = metrics_of_run(store, run, samples)
        for route, m in figures.routes.items():
            label = _label(route, run.id, seen[route] > 1)
            routes[label] = m
            paired[label] = {(s.task_id, s.epoch): s for s in samples if s.route == route}
    if len(routes) < 2:
        raise UsageError("nothing to compare: these runs hold one route", fix="eval with --route a --route b, or give "
                                                                               "two runs")
    labels = list(routes)
    if reference is not None and reference not in routes:
        raise UsageError(f"--reference {reference!r} is not one of the routes compared", fix=f"one of: {', '.join(labels)}")
    reference = reference or labels[0]
    differences = [_difference(reference, other, paired[reference], paired[other], reviewed) for other in labels
                   if other != reference]
    for diff in differences:
        if diff.pairs == 0:
            raise UsageError(f"routes {diff.against} and {diff.route} share no sample (task and epoch)",
                             fix="compare runs over the same tasks and epochs")
    priced = {r: m.cost_per_accepted_usd.value for r, m in routes.items()}
    known = {r: float(v) for r, v in priced.items() if isinstance(v, int | float)}
    best = min(known.values()) if known else None
    # a tie is what the table shows as equal: costs per accepted task are shown to the micro-dollar
    lowest = [r for r, v in known.items() if best is not None and round(v, 6) == round(best, 6)]
    unpriced = [r for r, v in priced.items() if v == "unknown"]
    ids = [r.id for r in runs]
    result = Comparison(run_id=ids[0] if len(ids) == 1 else ids, routes=routes, differences=differences,
                        cheapest_per_accepted=lowest[0] if len(lowest) == 1 else None,
                        cheapest_tied=lowest if len(lowest) > 1 else [], unpriced=unpriced)
    for other in labels:
        if other != reference:
            result.pairs[other] = _pairs(paired[reference], paired[other], reviewed)
    return result


def _accepted(sample: Sample, reviewed: dict[str, bool]) -> bool:
    """Accepted as the metrics table counts it: a person's latest review decides, else the verification."""
    return reviewed.get(sample.id, sample.outcome is Outcome.PASSED)


def _pairs(a: dict[tuple[str, int], Sample], b: dict[tuple[str, int], Sample], reviewed: dict[str, bool]) -> list[Pair]:
    out = []
    for key in sorted(set(a) & set(b)):
        first, second = _accepted(a[key], reviewed), _accepted(b[key], reviewed)
        change = "same" if first == second else "regression" if first else "fix"
        out.append(Pair(task_id=key[0], epoch=key[1], first=a[key], second=b[key], change=change))
    return out


def _paired(first: list[bool], second: list[bool]) -> AcceptedDifference | None:
    """The paired difference of two routes' acceptance over the same judged samples (exact McNemar, its interval)."""
    only_first = sum(1 for x, y in zip(first, second, strict=True) if x and not y)
    only_second = sum(1 for x, y in zip(first, second, strict=True) if y and not x)
    rate = mcnemar_exact_difference(only_first, only_second, len(first))
    if rate is None:
        return None
    return AcceptedDifference(value=rate[0], ci95=(rate[1], rate[2]), mcnemar_p=mcnemar_p(only_first, only_second),
                              only_first=only_first, only_second=only_second)


def _difference(first: str, second: str, a: dict[tuple[str, int], Sample], b: dict[tuple[str, int], Sample],
                reviewed: dict[str, bool]) -> Difference:
    """`second` against `first` on the samples both have (paired by task and epoch); accepted as the metrics table
    counts it (a person's review decides, else the verification), and verified-only beside it."""
    keys = sorted(set(a) & set(b))
    judged = [k for k in keys if a[k].outcome.judged and b[k].outcome.judged]
    passed, error = Outcome.PASSED, Outcome.ERROR

    accepted_diff = _paired([_accepted(a[k], reviewed) for k in judged], [_accepted(b[k], reviewed) for k in judged])
    verified_diff = _paired([a[k].outcome is passed for k in judged], [b[k].outcome is passed for k in judged])
    errors = sum(1 for k in keys if b[k].outcome is error) - sum(1 for k in keys if a[k].outcome is error)
    latency = bootstrap_mean_difference([float(b[k].usage.latency_ms or 0.0) - float(a[k].usage.latency_ms or 0.0)
                                         for k in keys if a[k].usage.latency_ms and b[k].usage.latency_ms])
    worse = [b[k] for k in keys if b[k].outcome is not passed and a[k].outcome is passed]
    trigger = None
    decisions = [(_toolcall(a[k]), _toolcall(b[k])) for k in keys]
    pairs = [(theirs, mine) for theirs, mine in decisions if theirs is not None and mine is not None]
    if pairs:  # the reference route's decisions taken as the labels (Kimi vendor verifier style)
        from k2probe.eval.toolscore import trigger_scores

        trigger = trigger_scores([{**mine, "expected": theirs["called"]} for theirs, mine in pairs])
    causes = Counter(_short(s.reason) for s in worse)
    return Difference(
        route=second, against=first, pairs=len(keys), judged_pairs=len(judged),
        reviewed_pairs=sum(1 for k in judged if a[k].id in reviewed or b[k].id in reviewed),
        accepted_difference=accepted_diff, verified_difference=verified_diff, error_difference=errors,
        latency_difference_ms=None if latency is None else LatencyDifference(mean=latency[0],
                                                                             ci95=(latency[1], latency[2])),
        causes=[Cause(reason=reason, samples=n) for reason, n in causes.most_common(3)],
        tool_trigger_vs_reference=trigger)


def _toolcall(sample: Sample) -> dict[str, Any] | None:
    """A tool-call sample's judged details (None for any other sample)."""
    details = sample.verdict.details if sample.verdict is not None else {}
    return details if details.get("kind") == "toolcall" else None


def _short(reason: Any) -> str:
    text = " ".join(str(reason or "no reason recorded").split())
    return text[:160]
