"""The emulator playing a model on HumanEval: the canonical solution, or — at `wrong_rate`, deterministically per
(seed, task, how many times it was asked) — a plausible wrong one, so evaluations see both outcomes."""

from __future__ import annotations

import random
from collections import Counter

from k2probe.emulator.answers import Answer
from k2probe.tasks.humaneval import CodeProblem, problem_in_text

_asked: Counter[tuple[int, str]] = Counter()


def humaneval_answer(text: str, seed: int, wrong_rate: float) -> Answer | None:
    """An answer if `text` carries a HumanEval prompt, else None."""
    problem = problem_in_text(text)
    if problem is None:
        return None
    nth = _asked[(seed, problem.task_id)]
    _asked[(seed, problem.task_id)] += 1
    wrong = random.Random(f"{seed}:{problem.task_id}:{nth}").random() < wrong_rate
    return Answer(reasoning=f"I read the docstring of {problem.entry_point} and its examples, then write the body.",
                  content=f"```python\n{_code(problem, wrong)}```\n")


def _code(problem: CodeProblem, wrong: bool) -> str:
    body = "    return None\n" if wrong else problem.canonical_solution
    return f"{problem.prompt}{body}"
