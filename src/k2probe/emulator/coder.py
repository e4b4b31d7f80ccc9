"""The emulator playing a model on the shipped evaluation suites. HumanEval: the canonical solution, or — at
`wrong_rate`, deterministically per (seed, task, how many times it was asked) — a plausible wrong one. Tool calls: the
labelled call with its arguments (or text where none is expected), broken at `tool_fault_rate` the ways a vendor's
deployment breaks them: arguments that do not parse, a required field missing, the call written out as text."""

from __future__ import annotations

import json
import random
from collections import Counter

from k2probe.emulator.answers import Answer, ToolCall
from k2probe.tasks.humaneval import CodeProblem, problem_in_text
from k2probe.tasks.toolcalls import TOOLS, case_in_text

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


TOOL_FAULTS = ("unparsable", "missing_required", "as_text")


def toolcall_answer(text: str, offered: list[str], seed: int, fault_rate: float) -> Answer | None:
    """An answer if `text` is a tool-call case's prompt, else None."""
    case = case_in_text(text)
    if case is None:
        return None
    nth = _asked[(seed, case.task_id)]
    _asked[(seed, case.task_id)] += 1
    rng = random.Random(f"{seed}:{case.task_id}:{nth}")
    if not case.expect_call or case.expected_tool not in offered:
        return Answer(reasoning="This is a question I can answer from what I know; no tool is needed.",
                      content=f"Here is a short answer to: {case.prompt}")
    arguments = dict(case.arguments)
    fault = TOOL_FAULTS[rng.randrange(len(TOOL_FAULTS))] if rng.random() < fault_rate else None
    name = str(case.expected_tool)
    if fault == "as_text":
        return Answer(reasoning=f"I will call {name}.", content=f'<tool_call>{{"name": "{name}", "arguments": '
                                                                f"{json.dumps(arguments)}}}</tool_call>")
    raw = json.dumps(arguments)
    if fault == "missing_required":
        required = TOOLS[name]["function"]["parameters"]["required"]
        raw = json.dumps({k: v for k, v in arguments.items() if k != required[0]})
    elif fault == "unparsable":
        raw = raw[:-1] + ",}"
    return Answer(reasoning=f"The user needs {name}; I will call it with what they gave.",
                  tool_calls=[ToolCall(id=f"{name}_0", name=name, arguments=raw)])
