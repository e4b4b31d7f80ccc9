"""A suite of one's own is one Python file: this test file is one (`suite` below), run by `k2probe eval <this file>`
and by `k2probe.evaluate(ArithSuite())` on the built-in emulator over loopback HTTP, its programs judged in the real
sandbox. Its own scorer decides each sample, its own metric lands in every route's `suite_metrics`, and the emulator
plays it through the suite's `play` hook. (Only absolute imports here: the CLI loads this file on its own.)"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import k2probe
from k2probe import Attempt, BaseSuite, Case, Outcome, Played, PlayRequest, RouteModel, Verdict

THIS = Path(__file__).resolve()
EXAMPLE = THIS.parents[1] / "examples" / "own_suite.py"
FENCE = re.compile(r"```(?:python)?\n(.*?)```", re.S)
ANSWERS = {"double-21": "print(21 * 2)", "triple-5": "print(5 + 3)"}  # what the emulated model writes


class ArithSuite(BaseSuite):
    """Two samples: the model writes a program printing a number; the program runs in the sandbox and passes when it
    prints the target. The emulator answers the first right and the second wrong."""

    name = "arith"

    def samples(self) -> list[Case]:
        return [Case("double-21", "Write a Python program that prints 21 doubled.", "42"),
                Case("triple-5", "Write a Python program that prints 5 tripled.", "15")]

    async def solve(self, sample: Case, model: RouteModel) -> Attempt:
        answer = (await model.chat(sample.input, purpose=f"arith {sample.id}")).content
        blocks = FENCE.findall(answer)
        code = blocks[0] if blocks else answer
        return Attempt(code, completion=code)

    async def score(self, sample: Case, attempt: Attempt, executor: Any) -> Verdict:
        """Model-written code runs only in the sandbox (the executor), never in this process."""
        from k2probe.sandbox.isolation import Limits
        from k2probe.sandbox.runtime import Runtime

        folder = Path(tempfile.mkdtemp(prefix="k2probe-arith-"))
        try:
            (folder / "answer.py").write_text(attempt.completion or "")
            ran = await executor.exec("python answer.py", folder, Limits(wall_s=30, cpu_s=10), Runtime.own())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        printed = ran.stdout.strip()
        passed = ran.exit_code == 0 and printed == sample.target
        return Verdict(outcome=Outcome.PASSED if passed else Outcome.FAILED,
                       reason="printed the target" if passed else f"printed {printed!r}, not {sample.target!r}",
                       proof=ran.stdout + ran.stderr, details={"printed": printed, "target": sample.target})

    def metrics(self, samples: list[Any]) -> dict[str, Any]:
        scored = [s for s in samples if s.verdict is not None and "printed" in s.verdict.details]
        exact = sum(s.verdict.details["printed"] == s.verdict.details["target"] for s in scored)
        return {"arith": {"exact": exact / len(scored) if scored else None, "n": len(scored)}}

    def play(self, request: PlayRequest) -> Played | None:
        text = request.user_text(last=True) or ""
        for case in self.samples():
            if text == case.input:
                return Played("I write the program.", f"```python\n{ANSWERS[case.id]}\n```")
        return None


class RaisingSuite(ArithSuite):
    """The same, but solving `triple-5` raises inside the suite (k2probe's side: `error`, never the model's)."""

    name = "arith-raising"

    async def solve(self, sample: Case, model: RouteModel) -> Attempt:
        if sample.id == "triple-5":
            raise RuntimeError("the suite broke on triple-5")
        return await super().solve(sample, model)


suite = ArithSuite()


def _verifications(workdir: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        return {task: json.loads(v) for task, v in db.execute("select task_id, verification from samples")}


def _run(workdir: Path) -> tuple[str, dict[str, Any]]:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        status, config = db.execute("select status, config from runs where command = 'eval'").fetchone()
    return status, json.loads(config)


def test_a_suite_file_runs_through_the_cli_with_its_own_scorer_and_metric(cli, workdir):
    here = workdir / "suites"
    here.mkdir()
    shutil.copy(THIS, here / "my_suite.py")
    result = cli("eval", "suites/my_suite.py", "--json", timeout=300)
    assert result.code == 0, result.stderr[-2000:]
    data = result.json()
    assert {s["task_id"]: s["outcome"] for s in data["samples"]} == {"double-21": "passed", "triple-5": "failed"}
    [route] = data["routes"]
    assert data["metrics"][route]["suite_metrics"] == {"arith": {"exact": 0.5, "n": 2}}
    assert data["metrics"]["overall"]["suite_metrics"] == {"arith": {"exact": 0.5, "n": 2}}
    wrong = _verifications(workdir)["triple-5"]
    assert wrong["printed"] == "8" and wrong["status"] == "failed"  # the sandboxed program's own output
    status, config = _run(workdir)
    assert status == "finished" and config["eval"]["suite"] == str((here / "my_suite.py").resolve())
    resumed = cli("eval", "--resume", data["run_id"][:8], "--json", timeout=300)  # the stored path finds the file
    assert resumed.code == 0 and resumed.json()["metrics"][route]["suite_metrics"]["arith"]["n"] == 2


def test_the_readme_example_suite_file_runs(cli, workdir):
    result = cli("eval", str(EXAMPLE), "--json", timeout=300)
    assert result.code == 0, result.stderr[-2000:]
    data = result.json()
    assert sorted(s["task_id"] for s in data["samples"]) == ["france", "japan"]
    assert all(s["outcome"] in ("passed", "failed") for s in data["samples"])  # judged: the model's work
    assert data["metrics"]["overall"]["suite_metrics"]["capitals"]["n"] == 2


def test_a_suite_object_runs_through_the_api_and_its_metric_is_typed(workdir):
    outcome = k2probe.evaluate(ArithSuite())
    assert {s.task_id: s.outcome for s in outcome.samples} == {"double-21": "passed", "triple-5": "failed"}
    typed = outcome.metrics
    [route] = typed.routes
    assert typed[route].suite_metrics["arith"] == {"exact": 0.5, "n": 2}
    assert typed.overall.samples.passed == 1 and typed.overall.samples.failed == 1


def test_a_solve_that_raises_is_that_samples_error_with_its_traceback(workdir):
    outcome = k2probe.evaluate(RaisingSuite())
    samples = {s.task_id: s for s in outcome.records}
    assert samples["double-21"].outcome == "passed"
    broken = samples["triple-5"]
    assert broken.outcome == "error" and (broken.reason or "").startswith("k2probe failed on this sample: RuntimeError")
    assert broken.verdict is not None
    proof = broken.verdict.proof
    assert "Traceback (most recent call last)" in proof and "the suite broke on triple-5" in proof
    assert _run(workdir)[0] == "finished"
    assert outcome.metrics.overall.suite_metrics["arith"]["n"] == 1  # the error is no scored sample


class OneAtATime:
    """A scheduler of the test's own (the seam a distributed one plugs into): units one after another, last first."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def run(self, units: Any, worker: Any, sink: Any) -> list[Any]:
        for unit in reversed(list(units)):
            self.seen.append(unit)
            sink(unit, await worker(unit))
        return []


def test_another_scheduler_plugs_in_and_runs_self_contained_units(workdir):
    scheduler = OneAtATime()
    outcome = k2probe.evaluate(ArithSuite(), epochs=2, scheduler=scheduler)
    assert sorted((u.task_id, u.epoch) for u in scheduler.seen) == [("double-21", 0), ("double-21", 1),
                                                                   ("triple-5", 0), ("triple-5", 1)]
    assert {u.suite for u in scheduler.seen} == {"arith"} and {u.run_id for u in scheduler.seen} == {outcome.run_id}
    assert sorted(s.outcome for s in outcome.samples) == ["failed", "failed", "passed", "passed"]
    assert outcome.metrics.overall.pass_at_k["2"].value == 0.5


def test_a_broken_suite_file_is_one_line_exit_2(cli, workdir):
    cases = {"syntax.py": ("def broken(:\n", "line 1"),
             "raises.py": ("import json\nraise ValueError('no config here')\n", "ValueError: no config here"),
             "nothing.py": ("x = 1\n", "defines no `suite`"),
             "wrong.py": ("suite = 42\n", "not a suite"),
             "taken.py": ("from k2probe import BaseSuite\nclass S(BaseSuite):\n    name = 'humaneval'\n"
                          "    def samples(self): return []\n    async def solve(self, s, m): ...\n"
                          "    async def score(self, s, a, e): ...\nsuite = S\n", "is a built-in suite's"),
             "twice.py": ("from types import SimpleNamespace as N\nfrom k2probe import BaseSuite\nclass S(BaseSuite):\n"
                          "    name = 'twice'\n    def samples(self): return [N(id='a'), N(id='b'), N(id='a')]\n"
                          "    async def solve(self, s, m): ...\n    async def score(self, s, a, e): ...\nsuite = S\n",
                          "more than one sample with id 'a'")}
    for name, (text, words) in cases.items():
        (workdir / name).write_text(text)
        result = cli("eval", name)
        assert result.code == 2, (name, result.stderr)
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    missing = cli("eval", "absent.py")
    assert missing.code == 2 and "does not exist" in missing.stderr


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_the_emulator_and_the_runner_know_no_suite_kind():
    """A suite kind is one module and one registry line: the emulator plays suites through their hook, and the runner
    solves, scores and records whatever the suite is."""
    src = Path(k2probe.__file__).parent
    for path in sorted((src / "emulator").glob("*.py")):
        inside = [m for m in _imports(path) if m.startswith(("k2probe.tasks", "k2probe.eval.suites"))]
        assert not inside, (path.name, inside)
    for name in ("runner.py", "scheduler.py", "evaluate.py", "plan.py"):
        path = src / "eval" / name
        assert not [m for m in _imports(path) if m.startswith(("k2probe.tasks", "k2probe.eval.suites"))], name
    assert "isinstance" not in (src / "eval" / "runner.py").read_text(encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - `python tests/test_own_suite.py` lists the suite's samples
    sys.stdout.write("\n".join(c.id for c in suite.samples()) + "\n")
