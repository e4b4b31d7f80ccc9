"""Routes side by side: the same samples on two routes, the difference with its interval, and what caused it."""

from __future__ import annotations

import pytest

from k2probe.core.stats import mcnemar_p, paired_rate_difference

pytestmark = pytest.mark.skipif(not __import__("shutil").which("bwrap"), reason="the sandbox needs bubblewrap")


def test_compare_names_the_route_that_drops_reasoning_and_why(cli, workdir):
    (workdir / "k2probe.toml").write_text("[routes.direct]\nemulator = true\n"
                                          "[routes.relay]\nemulator = true\npersonality = 'lossy-relay'\n")
    ran = cli("eval", "basic", "--tasks", "slugify,roman", "--route", "direct", "--route", "relay", "--json",
              timeout=300)
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
