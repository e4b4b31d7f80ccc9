"""The evaluation report: one self-contained HTML page (no script, no CDN) built from the store alone — the verdict
and the metrics per route at the top, charts (latency distribution, cost per accepted task, outcomes by task), every
sample that did not pass with what the model answered (its code, or its patch and transcript) and the lines that prove
why (the failing assertion, the model's line it points at), and the passed samples, collapsed."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2probe import __version__
from k2probe.core.results import Outcome, RunMetrics, Sample
from k2probe.eval.evaluate import metrics_of_run
from k2probe.eval.pytestproof import own_frames_removed
from k2probe.recording import queries
from k2probe.recording.store import Store
from k2probe.report.charts import Bar, hbar, histogram
from k2probe.report.evaluation import ROWS
from k2probe.report.html import environment, write_page
from k2probe.report.transcript import AttemptView, attempt_views

_env = environment()
MAX_TASK_ROWS = 40


def _natural(text: str) -> list[Any]:
    """HumanEval/2 before HumanEval/10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _outcome_chart(samples: list[Sample]) -> str:
    by_task: dict[str, Counter[Outcome]] = defaultdict(Counter)
    for s in samples:
        by_task[s.task_id][s.outcome] += 1
    ordered = sorted(by_task.items(), key=lambda item: (-(item[1][Outcome.FAILED] + item[1][Outcome.ERROR]),
                                                        _natural(item[0])))
    shown = ordered[:MAX_TASK_ROWS]
    order = (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR, Outcome.PENDING)
    bars = [Bar(task, [(o.value, float(c[o])) for o in order]) for task, c in shown]
    title = "outcomes by task (green passed, red failed, amber error)"
    if len(ordered) > len(shown):
        title += f" — the {len(shown)} with most non-passes of {len(ordered)}"
    return hbar(title, bars, "samples")


def _cost_chart(figures: RunMetrics) -> str:
    bars = []
    for route, m in figures.routes.items():
        cost = m.cost_per_accepted_usd
        value = cost.value
        if isinstance(value, float | int):
            bars.append(Bar(route, [("cost", float(value))], f"${value:.6f} (n={cost.accepted} accepted)"))
        else:
            bars.append(Bar(route, [], "unknown price" if value == "unknown" else "nothing accepted"))
    return hbar("cost per accepted task", bars, "USD per accepted task")


@dataclass
class CodeLine:
    number: int
    text: str
    marked: bool = False


@dataclass
class SampleView:
    """One sample as the page shows it: the verdict, what the model answered, and why it failed."""

    sample: Sample
    no_answer: str | None = None  # "no answer: <cause>" when the model's answer never arrived
    code: list[CodeLine] = field(default_factory=list)  # the completion judged, its numbered lines
    prompt: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # the checker's: assertion, call, answered, model_line
    proof: str = ""
    attempt: AttemptView | None = None


def _no_answer(sample: Sample, has_answer: bool) -> str | None:
    """The cause a sample got no answer, in the words the rest of k2probe uses (core/noanswer.py)."""
    reason = sample.reason or ""
    if sample.outcome is not Outcome.ERROR:
        return None
    if reason.startswith("no answer:"):
        return reason
    return None if has_answer else f"no answer: {reason or 'none recorded'}"


_TEST_FRAME = re.compile(r'File "<test>", line (\d+)')


def _older_facts(proof: str, task_id: str, suite: str) -> dict[str, Any]:
    """For a run judged before verdicts named their assertion: the dataset test's statement its traceback points at."""
    found = _TEST_FRAME.findall(proof)
    if suite != "humaneval" or not found:
        return {}
    from k2probe.sandbox.checker import statement_at
    from k2probe.tasks.humaneval import problems

    problem = problems().get(task_id)
    statement = statement_at(problem.test, int(found[-1])) if problem is not None else ""
    return {"test_line": int(found[-1]), "assertion": statement} if statement else {}


def _prompts(suite: str) -> dict[str, str]:
    if suite != "humaneval":
        return {}
    from k2probe.tasks.humaneval import problems

    return {task: problem.prompt for task, problem in problems().items()}


def sample_views(store: Store, run_id: str, samples: list[Sample], suite: str) -> list[SampleView]:
    """Every sample with what it needs on the page (k2probe's own frames never in a proof)."""
    attempts = {a.sample_id: a for a in attempt_views(store, run_id) if a.sample_id}
    prompts = _prompts(suite)
    return [sample_view(s, suite, prompts.get(s.task_id), attempts.get(s.id)) for s in samples]


def sample_view(s: Sample, suite: str, prompt: str | None, attempt: AttemptView | None) -> SampleView:
    """One sample as a page shows it (the report's and the viewer's): its verdict's facts — the failing assertion,
    the call and what it answered, the model's line marked in its numbered code — or "no answer: <cause>"."""
    facts = dict(s.verdict.details) if s.verdict else {}
    if s.verdict and s.outcome is Outcome.FAILED and not facts:
        facts = _older_facts(s.verdict.proof, s.task_id, suite)
    has_answer = bool(s.completion) or bool(attempt and attempt.steps)
    marked = facts.get("model_line")
    code = [CodeLine(i, line, i == marked) for i, line in enumerate((s.completion or "").splitlines(), 1)]
    proof = own_frames_removed(s.verdict.proof) if s.verdict else ""
    no_answer = _no_answer(s, has_answer)
    return SampleView(s, no_answer, code, prompt, facts, "" if no_answer else proof, attempt)


def build(store: Store, run_id: str) -> dict[str, Any]:
    """Everything the page shows, read from the store."""
    run = store.find_run(run_id)
    plan = run.config.get("eval") or {}
    samples = store.samples(run.id)
    figures = metrics_of_run(store, run, samples)
    routes = list(figures.routes)
    latencies = queries.call_latencies(store, run.id)
    ordered = sorted(samples, key=lambda s: (_natural(s.task_id), s.route, s.epoch))
    views = sample_views(store, run.id, ordered, str(plan.get("suite") or ""))
    table = [{"label": label, "cells": [read(figures[r]) for r in routes]} for label, read in ROWS]
    summary = run.summary or {}
    return {
        "run": run, "plan": plan, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at)),
        "routes": routes, "metrics": figures, "table": table,
        "emulated": bool(summary.get("emulated")), "version": __version__,
        "verdicts": [{"route": r, "accepted": figures[r].accepted_rate, "errors": figures[r].error_rate,
                      "samples": figures[r].samples} for r in routes],
        "charts": [histogram(f"latency per call — {route}", latencies.get(route, []), "end-to-end latency (ms)")
                   for route in routes] + [_cost_chart(figures), _outcome_chart(samples)],
        "problems": [v for v in views if v.sample.outcome is not Outcome.PASSED],
        "passed": [v for v in views if v.sample.outcome is Outcome.PASSED],
    }


def write_eval_report(store: Store, run_id: str, path: Path) -> Path:
    return write_page(path, eval_page(store, run_id))


def eval_page(store: Store, run_id: str) -> str:
    return store.redactor.text(_env.get_template("eval.html.j2").render(**build(store, run_id)))
