"""What `k2probe eval` does between the CLI and the evaluation: parse thresholds, show progress, print or write the
results, and say whether every `--fail-under` held."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from k2probe.api import evaluate
from k2probe.core.errors import UsageError
from k2probe.core.files import check_output
from k2probe.core.results import OVERALL, Outcome, RouteMetrics, Sample
from k2probe.eval.evaluate import EvalOutcome, check_samples_path
from k2probe.eval.plan import EvalPlan
from k2probe.report import terminal as render
from k2probe.report.evaluation import live, print_metrics
from k2probe.report.junit import write_junit

HIGHER_IS_BETTER = ("accepted_rate", "pass_at_")  # fail when under the value
LOWER_IS_BETTER = ("error_rate", "tool_call_failure_rate")  # fail when over it


def parse_thresholds(items: list[str], epochs: int, max_error_rate: float | None = None) -> dict[str, float]:
    """--fail-under METRIC=VALUE, each one a metric this run can judge (pass_at_K needs K ≤ epochs), plus the error
    rate the run may have (--max-error-rate, 0 by default: a sample nobody could judge is not a pass)."""
    thresholds: dict[str, float] = {}
    for item in items:
        name, _, raw = item.partition("=")
        name = name.strip()
        if not name.startswith(HIGHER_IS_BETTER) and name not in LOWER_IS_BETTER:
            raise UsageError(f"--fail-under {item!r}: unknown metric {name!r}",
                             fix="use accepted_rate, pass_at_K (K ≤ epochs), error_rate or tool_call_failure_rate")
        if name.startswith("pass_at_"):
            k = name.removeprefix("pass_at_")
            if not k.isdigit() or not 1 <= int(k) <= epochs:
                raise UsageError(f"--fail-under {item!r}: pass@{k} cannot be judged with {epochs} epoch(s)",
                                 fix=f"use pass_at_K with K from 1 to the epochs, or raise --epochs to {k}"
                                 if k.isdigit() and int(k) > 0 else "use pass_at_1 … pass_at_K (K ≤ --epochs)")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"--fail-under {item!r}: the value must be a rate between 0 and 1",
                             fix="e.g. --fail-under accepted_rate=0.8")
        thresholds[name] = value
    if max_error_rate is not None and "error_rate" in thresholds:
        raise UsageError("--fail-under error_rate and --max-error-rate both say how many errors are allowed",
                         fix="give it once: --max-error-rate R")
    thresholds.setdefault("error_rate", max_error_rate or 0.0)
    return thresholds


def _value(metrics: RouteMetrics, name: str) -> float | None:
    if name.startswith("pass_at_"):
        entry = metrics.pass_at_k.get(name.removeprefix("pass_at_"))
        return None if entry is None else entry.value
    rates = {"accepted_rate": metrics.accepted_rate, "error_rate": metrics.error_rate,
             "tool_call_failure_rate": metrics.tool_call_failure_rate}
    return rates[name].value


def _causes(result: EvalOutcome) -> str:
    """The commonest reasons samples ended as error, each with its count."""
    from collections import Counter

    reasons = Counter((s.reason or "no reason recorded")[:160] for s in result.samples if s.outcome is Outcome.ERROR)
    return "; ".join(f"{n}× {reason}" for reason, n in reasons.most_common(3))


def broken_thresholds(result: EvalOutcome, thresholds: dict[str, float]) -> list[str]:
    """Each threshold that does not hold on the overall figures, said in words."""
    overall = result.metrics.get(OVERALL)
    broken = []
    for name, limit in thresholds.items():
        value = _value(overall, name) if overall is not None else None
        if value is None:
            broken.append(f"{name}: no value to compare with {limit:g} (nothing judged)")
        elif name == "error_rate" and value > limit:
            broken.append(f"{overall.samples.error if overall else 0} of {overall.samples.done if overall else 0} "
                          f"sample(s) ended as error, over --max-error-rate {limit:g} (no verdict on the model: "
                          f"{_causes(result)})")
        elif name in LOWER_IS_BETTER and value > limit:
            broken.append(f"{name} {value:.3f} is over {limit:g}")
        elif name not in LOWER_IS_BETTER and value < limit:
            broken.append(f"{name} {value:.3f} is under {limit:g}")
    return broken


def run_eval_command(plan: EvalPlan, resume: str | None, thresholds: dict[str, float], junit: Path | None,
                     as_json: bool, html: Path | None = None,
                     timeout_s: float | None = None) -> tuple[EvalOutcome, list[str]]:
    check_samples_path(plan.samples_file)
    for option, path in (("--junit", junit), ("--html", html)):
        if path is not None:
            check_output(path, option)
    bar = live(0, enabled=not as_json)
    state: dict[str, Any] = {}

    def on_start(run_id: str, sessions: dict[str, Any], pending: int) -> None:
        state["emulated"] = any(s.route.emulated for s in sessions.values())
        if not as_json:
            for session in sessions.values():
                for line in session.notices:
                    render.notice(line)
            render.notice(f"eval run {run_id[:8]}: {pending} sample(s) to run (resume with --resume {run_id[:8]})")
        state["task"] = bar.add_task("eval", total=pending, passed=0, failed=0, errors=0, cost=0.0)
        bar.start()

    def on_sample(_sample: Sample, progress: Any) -> None:
        bar.update(state["task"], completed=progress.done, passed=progress.passed, failed=progress.failed,
                   errors=progress.errors, cost=progress.cost_usd)

    try:
        result = evaluate(plan, resume=resume, on_start=on_start, on_sample=on_sample, timeout_s=timeout_s)
    finally:
        bar.stop()
    if junit is not None:
        write_junit(junit, result.plan.suite, result.records)
    if html is not None:
        from k2probe.recording.store import Store
        from k2probe.report.evaluation_html import write_eval_report

        store = Store()
        try:
            write_eval_report(store, result.run_id, html)
        finally:
            store.dispose()
    if as_json:
        document = result.model_copy(update={"thresholds": thresholds,
                                             "broken_thresholds": broken_thresholds(result, thresholds)})
        render.emit_json(document.model_dump(mode="json"))
    else:
        print_metrics(result.plan.suite, result.run_id, result.metrics, bool(state.get("emulated")), result.isolation)
        for sample in result.samples:
            if sample.outcome in (Outcome.FAILED, Outcome.ERROR):
                render.out.print(render.shown(f"{sample.outcome.value:>6}  {sample.task_id} @ {sample.route} "
                                              f"epoch {sample.epoch}: {sample.reason or ''}"))
        for written in (junit, html):
            if written is not None:
                render.notice(f"wrote {written}")
    return result, broken_thresholds(result, thresholds)
