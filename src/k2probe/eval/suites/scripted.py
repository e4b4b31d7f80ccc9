"""How the emulator plays a coding model on the shipped repository tasks (their suite's play hook): a scripted
trajectory per task, built from the task's solution, with deliberate slips (malformed arguments, a wrong patch, an
unknown tool, an empty turn) at a chosen rate."""

from __future__ import annotations

import difflib
import functools
import json
import random
from dataclasses import dataclass
from typing import Any

from k2probe.eval.suite import Played
from k2probe.tasks.shipped import Task

SLIPS = ("malformed_args", "unknown_tool", "wrong_patch", "empty_turn")


@dataclass(frozen=True)
class ScriptStep:
    tool: str
    arguments: dict[str, Any]
    reasoning: str


@functools.lru_cache(maxsize=64)
def script_for(task: Task) -> tuple[ScriptStep, ...]:
    """list_files → read each changed file → patch (or write) it → run_tests → finish."""
    steps = [ScriptStep("list_files", {}, "First I look at the repository layout to find the code the task names.")]
    changed = sorted(p.relative_to(task.solution).as_posix() for p in task.solution.rglob("*") if p.is_file())
    for rel in changed:
        if (task.repo / rel).is_file():
            steps.append(ScriptStep("read_file", {"path": rel}, f"I read {rel} to see what it does today."))
    for rel in changed:
        new = (task.solution / rel).read_text(encoding="utf-8")
        old_path = task.repo / rel
        if old_path.is_file():
            old = old_path.read_text(encoding="utf-8")
            patch = "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                                 fromfile=f"a/{rel}", tofile=f"b/{rel}"))
            steps.append(ScriptStep("apply_patch", {"patch": patch},
                                    f"The bug is clear from {rel}; I fix it with a small patch."))
        else:
            steps.append(ScriptStep("write_file", {"path": rel, "content": new}, f"I add the new file {rel}."))
    steps.append(ScriptStep("run_tests", {}, "Now I run the tests to check the change."))
    steps.append(ScriptStep("finish", {"summary": task.title}, "The tests pass; the task is done."))
    return tuple(steps)


def _is_error(message: dict[str, Any]) -> bool:
    return str(message.get("content") or "").startswith("ERROR")


def _progress(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(successful tool results so far, errors since the last success)."""
    done = errors = 0
    for message in messages:
        if message.get("role") == "tool" or (message.get("role") == "user" and _is_error(message)):
            if _is_error(message):
                errors += 1
            else:
                done, errors = done + 1, 0
    return done, errors


def scripted_answer(task: Task, messages: list[dict[str, Any]], seed: int, slip_rate: float) -> Played:
    script = script_for(task)
    done, errors = _progress(messages)
    index = min(done, len(script) - 1)
    step = script[index]
    rng = random.Random(f"{seed}:{task.suite}/{task.id}:{index}")
    arguments = json.dumps(step.arguments)
    name = step.tool
    reasoning = step.reasoning
    if errors == 0 and slip_rate > 0 and rng.random() < slip_rate:
        kinds = [k for k in SLIPS if k != "wrong_patch" or step.tool == "apply_patch"]
        slip = rng.choice(kinds)
        if slip == "empty_turn":  # neither a tool call nor an answer
            return Played(reasoning + " (slip: empty_turn)", "")
        if slip == "malformed_args":
            arguments = arguments[: max(1, len(arguments) // 2)]
        elif slip == "unknown_tool":
            name = "grep_repo"
        else:
            broken = step.arguments["patch"].replace("\n-", "\n-    # a line that is not there\n-", 1)
            arguments = json.dumps({"patch": broken})
        reasoning += f" (slip: {slip})"
    elif errors:
        reasoning = f"My last call failed; I try again properly. {reasoning}"
    return Played(reasoning, tool_calls=[(f"{name}_0", name, arguments)])
