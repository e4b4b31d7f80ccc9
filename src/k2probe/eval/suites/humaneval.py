"""HumanEval as a suite: one chat request per sample, the completion judged in the sandbox by the checker pool
(sandbox/programs.py) — the candidate and the trusted test in different processes. A samples file's completions are
attempts too (`--samples`). The emulator plays it with the canonical solution, wrong at `wrong_rate`."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from typing import TYPE_CHECKING

from k2probe.core.results import Outcome, Verdict
from k2probe.eval.suite import Attempt, BaseSuite, Played, PlayRequest, RouteModel
from k2probe.tasks.humaneval import SUITE, CodeProblem, completion_of, problem_in_text, problems

if TYPE_CHECKING:
    from k2probe.sandbox.executor import Executor

PROOF_CHARS = 2000
_asked: Counter[tuple[int, str]] = Counter()  # how many times the emulator was asked each problem (per seed)


class HumanEvalSuite(BaseSuite):
    name = SUITE

    def samples(self) -> list[CodeProblem]:
        return list(problems().values())

    async def solve(self, sample: CodeProblem, model: RouteModel) -> Attempt:
        outcome = await model.chat(sample.request_text(), purpose=f"eval {sample.task_id}")
        return Attempt(outcome.content, completion=completion_of(sample, outcome.content))

    async def score(self, sample: CodeProblem, attempt: Attempt, executor: Executor) -> Verdict:
        program = sample.program(attempt.completion or "")
        verdict = await executor.program(f"{sample.task_id}:{uuid.uuid4().hex[:8]}", program)
        return Verdict(outcome=Outcome(verdict.status), reason=verdict.reason, proof=verdict.output[-PROOF_CHARS:],
                       details=verdict.details)

    def attempt_from(self, completion: str) -> Attempt:
        return Attempt(completion, completion=completion)  # the completion is all the checker needs

    def given(self, path: str) -> dict[str, list[Attempt]]:
        from k2probe.eval.plan import read_samples_file

        return {task: [Attempt(c, completion=c) for c in completions]
                for task, completions in read_samples_file(path).items()}

    def play(self, request: PlayRequest) -> Played | None:
        """The canonical solution (or, at `wrong_rate`, deterministically per seed, problem and asking, a wrong one)."""
        text = request.user_text(last=True)
        if request.tools or text is None:
            return None
        problem = problem_in_text(text)
        if problem is None:
            return None
        nth = _asked[(request.seed, problem.task_id)]
        _asked[(request.seed, problem.task_id)] += 1
        wrong = random.Random(f"{request.seed}:{problem.task_id}:{nth}").random() < request.wrong_rate
        body = "    return None\n" if wrong else problem.canonical_solution
        return Played(f"I read the docstring of {problem.entry_point} and its examples, then write the body.",
                      f"```python\n{problem.prompt}{body}```\n")
