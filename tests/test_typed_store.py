"""The store maps its rows to and from the typed results: what goes in comes back as the same fields, a row written
before a field existed still reads, a sample keeps its first result, and a misspelt field is refused, not lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from k2probe.core.results import Outcome, RunMetrics, SampleResult, Usage, Verdict
from k2probe.eval import metrics
from k2probe.recording.store import Store


@pytest.fixture
def store(workdir: Path):
    opened = Store()
    yield opened
    opened.dispose()


def _samples(store: Store) -> tuple[str, dict[str, str]]:
    run_id = store.start_run("eval", "a", {"eval": {"epochs": 1}})
    store.plan_samples(run_id, "toolcalls", [("t1", "a", 0), ("t2", "a", 0), ("t3", "b", 0)])
    return run_id, {s.task_id: s.id for s in store.samples(run_id)}


def test_a_sample_result_comes_back_as_it_went_in(store: Store):
    run_id, ids = _samples(store)
    details = {"kind": "toolcall", "expected": True, "called": True, "args_valid": True, "finish_consistent": True}
    result = SampleResult(verdict=Verdict(outcome=Outcome.PASSED, reason="as labelled", proof="[]", details=details),
                          usage=Usage(calls=1, retries=2, prompt_tokens=10, completion_tokens=5, reasoning_tokens=3,
                                      cost_usd=0.25, latency_ms=12.5),
                          completion="x", started_at=1.0, finished_at=2.0)
    store.finish_sample(ids["t1"], result)
    store.finish_sample(ids["t1"], SampleResult.error("a second result"))  # a sample keeps its first result
    [one] = [s for s in store.samples(run_id) if s.task_id == "t1"]
    assert one.outcome is Outcome.PASSED and one.verdict == result.verdict and one.usage == result.usage
    assert (one.completion, one.started_at, one.finished_at, one.reason) == ("x", 1.0, 2.0, "as labelled")
    pending = [s for s in store.samples(run_id) if s.task_id != "t1"]
    assert all(s.outcome is Outcome.PENDING and s.verdict is None for s in pending)


def test_a_row_written_before_verdicts_were_typed_still_reads(store: Store, workdir: Path):
    run_id, ids = _samples(store)
    store.flush()
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:  # as older k2probe wrote them
        db.execute("update samples set outcome = 'error', reason = 'route 503', verification = null where id = ?",
                   (ids["t2"],))
        db.execute("update samples set outcome = 'failed', reason = null, verification = ? where id = ?",
                   ('{"status": "failed", "reason": "assert 1 == 2", "output": "Traceback\\nAssertionError"}',
                    ids["t3"]))
    by_task = {s.task_id: s for s in store.samples(run_id)}
    unanswered, failed = by_task["t2"], by_task["t3"]
    assert unanswered.verdict == Verdict(outcome=Outcome.ERROR, reason="route 503")
    assert failed.verdict is not None and failed.verdict.reason == "assert 1 == 2"
    assert failed.verdict.proof_lines() == ["Traceback", "AssertionError"] and failed.verdict.details == {}


def test_a_misspelt_field_is_refused_not_lost(store: Store):
    with pytest.raises(ValidationError):
        Usage(prompt_tokns=3)  # type: ignore[call-arg]
    run_id, _ = _samples(store)
    with pytest.raises(TypeError):
        store.add_review(run_id, accepted=True, repair_minute=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        store.start_attempt(run_id, route="a", model="m", statement="s", task="t1")  # type: ignore[call-arg]


def test_metrics_are_typed_and_a_suite_adds_its_own_per_route(store: Store):
    run_id, ids = _samples(store)
    verdict = {"kind": "toolcall", "expected": True, "called": False, "args_valid": None, "finish_consistent": True}
    store.finish_sample(ids["t1"], SampleResult(verdict=Verdict(outcome=Outcome.FAILED, details=verdict)))
    store.finish_sample(ids["t2"], SampleResult(verdict=Verdict(outcome=Outcome.PASSED)))
    store.finish_sample(ids["t3"], SampleResult.error("route 503"))
    figures = metrics.compute(store, run_id, extra=lambda samples: {"mine": {"n": len(samples)}})
    assert isinstance(figures, RunMetrics) and set(figures.root) == {"a", "b", "overall"}
    assert figures["a"].samples.passed == 1 and figures["a"].accepted_rate.value == 0.5
    assert figures["b"].error_rate.value == 1.0 and figures["b"].accepted_rate.n == 0  # never the model's failure
    assert figures.overall.suite_metrics == {"mine": {"n": 3}} and figures["a"].suite_metrics == {"mine": {"n": 2}}
    from k2probe.eval.evaluate import suite_metrics_of_run

    default = metrics.compute(store, run_id, extra=suite_metrics_of_run("toolcalls"))  # the suite's own figures
    assert default["a"].suite_metrics["toolcalls"]["fn"] == 1 and default["b"].suite_metrics == {}
    assert metrics.compute(store, run_id)["a"].suite_metrics == {}  # none asked for, none made up
