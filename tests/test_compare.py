"""Routes side by side: the same samples on two routes, the difference with its interval, and what caused it."""

from __future__ import annotations

import pytest

from k2probe.core.stats import mcnemar_p, paired_rate_difference

pytestmark = pytest.mark.skipif(not __import__("shutil").which("bwrap"), reason="the sandbox needs bubblewrap")


def test_compare_names_the_route_that_drops_reasoning_and_why(cli, workdir):
    (workdir / "k2probe.toml").write_text("[routes.direct]\nemulator = true\n"
                                          "[routes.relay]\nemulator = true\npersonality = 'lossy-relay'\n")
    ran = cli("eval", "basic", "--tasks", "slugify,roman", "--route", "direct", "--route", "relay", "--json",
              "--max-error-rate", "1", timeout=300)  # the relay's samples are all error: allowed here, to compare
    assert ran.code == 0, ran.stderr
    run_id = ran.json()["run_id"]
    result = cli("compare", run_id[:8], "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert set(data["routes"]) == {"direct", "relay"} and data["cheapest_per_accepted"] == "direct"
    [diff] = data["differences"]
    assert diff["route"] == "relay" and diff["against"] == "direct" and diff["pairs"] == 2
    assert diff["error_difference"] == 2  # the relay's samples got no usable answer: the route, not the model
    assert "reasoning_content is missing" in diff["causes"][0]["reason"]
    assert data["routes"]["direct"]["accepted_rate"]["value"] == 1.0
    shown = cli("compare", run_id[:8])
    assert "passed on direct but not here" in shown.stdout and "cheapest per accepted task: direct" in shown.stdout


def test_compare_refuses_a_single_route(cli, workdir):
    (workdir / "s.jsonl").write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n')
    ran = cli("eval", "humaneval", "--samples", "s.jsonl", "--json")
    assert ran.code == 0, ran.stderr
    refused = cli("compare", ran.json()["run_id"][:8])
    assert refused.code == 2 and "nothing to compare" in refused.stderr


def test_paired_statistics():
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64)  # six discordant pairs all one way
    diff, low, high = paired_rate_difference(0, 6, 12) or (0, 0, 0)
    assert diff == 0.5 and low < 0.5 < high and low > 0  # significant: the interval excludes 0
    diff, low, high = paired_rate_difference(3, 3, 12) or (0, 0, 0)
    assert diff == 0 and low < 0 < high


def _constructed(store, suite: str, a: list[str], b: list[str], cost: float = 0.001,
                 task: str = "t", cost_b: float | None = None) -> tuple[str, dict[str, str]]:
    """An evaluation run made directly in a real store: routes a and b over the same tasks, with these outcomes and
    one priced call per sample (the same price on both routes: a cost tie)."""
    from k2probe.core.records import CallRecord
    from k2probe.core.results import Outcome, SampleResult, Verdict

    run_id = store.start_run("eval", "a", {"eval": {"suite": suite, "epochs": 1}})
    store.plan_samples(run_id, suite, [(f"{task}{i}", route, 0) for route in ("a", "b") for i in range(len(a))])
    ids: dict[str, str] = {}
    for sample in store.samples(run_id):
        outcome = (a if sample.route == "a" else b)[int(sample.task_id[len(task):])]
        store.finish_sample(sample.id, SampleResult(verdict=Verdict(outcome=Outcome(outcome))))
        ids[f"{sample.route}:{sample.task_id}"] = sample.id
        store.add_call(run_id, CallRecord(route=sample.route, model="kimi-k2.7-code", endpoint="chat", stream=False,
                                          request={}, started_at=0.0, status=200, prompt_tokens=10,
                                          completion_tokens=10,
                                          cost_usd=cost if sample.route == "a" or cost_b is None else cost_b,
                                          latency_ms=10.0, sample_id=sample.id))
    store.finish_run(run_id, "finished", {})
    return run_id, ids


def test_the_interval_agrees_with_the_test_reviews_count_and_a_cost_tie_is_a_tie(workdir):
    """20 pairs, route b accepted on 5 that a was not and never the reverse: McNemar p = 0.0625, not significant, so
    the interval contains 0 (the Wald interval said [+6, +44]). A review that rejects one of b's passes changes the
    paired difference as it changes the table; the verified-only figure stays beside it."""
    from k2probe.eval.compare import compare
    from k2probe.recording.store import Store

    store = Store()
    try:
        run_id, ids = _constructed(store, "humaneval", ["failed"] * 5 + ["passed"] * 15, ["passed"] * 20)
        result = compare(store, [run_id])
        [diff] = result.differences
        acc = diff.accepted_difference
        assert acc is not None and acc.value == 0.25 and abs(acc.mcnemar_p - 0.0625) < 1e-9
        assert acc.ci95[0] < 0 < acc.ci95[1], acc.ci95  # not significant: the interval says so too
        assert result.cheapest_per_accepted == "b" and result.cheapest_tied == []  # a accepted 15, b 20: b cheaper
        store.add_review(run_id, accepted=False, sample_id=ids["b:t0"])
        reviewed = compare(store, [run_id]).differences[0]
        assert reviewed.accepted_difference is not None and reviewed.verified_difference is not None
        assert reviewed.accepted_difference.value == 0.20 and reviewed.verified_difference.value == 0.25
        assert reviewed.reviewed_pairs == 1
        even, _ = _constructed(store, "humaneval", ["passed", "failed"], ["failed", "passed"])
        tie = compare(store, [even])
        assert tie.cheapest_per_accepted is None and tie.cheapest_tied == ["a", "b"]
        # what the table shows as equal ($0.001000 per accepted task) is a tie, a float's last bits are not a winner
        near, _ = _constructed(store, "humaneval", ["passed"], ["passed"], cost=0.001, cost_b=0.001 + 1e-10)
        assert compare(store, [near]).cheapest_tied == ["a", "b"]
        apart, _ = _constructed(store, "humaneval", ["passed"], ["passed"], cost=0.001, cost_b=0.0009)
        assert compare(store, [apart]).cheapest_per_accepted == "b"
    finally:
        store.dispose()


def test_runs_of_different_suites_or_no_shared_sample_are_refused(workdir):
    from k2probe.core.errors import UsageError
    from k2probe.eval.compare import compare
    from k2probe.recording.store import Store

    store = Store()
    try:
        one, _ = _constructed(store, "humaneval", ["passed"], ["failed"])
        other, _ = _constructed(store, "basic", ["passed"], ["failed"])
        with pytest.raises(UsageError, match="different suites"):
            compare(store, [one, other])
        elsewhere, _ = _constructed(store, "humaneval", ["passed"], ["failed"], task="u")
        with pytest.raises(UsageError, match="share no sample"):
            compare(store, [one, elsewhere])
    finally:
        store.dispose()
