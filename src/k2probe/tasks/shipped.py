"""Shipped task suites: small Python repositories with a statement, visible tests, hidden tests and a solution.

Each task folder holds `task.toml`, `repo/` (what the agent starts from), `hidden_tests/` (copied in only to verify,
never shown to the model) and `solution/` (the files a correct fix ends with: the emulator's scripted model uses it).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

SUITES_DIR = Path(__file__).parent / "suites"


@dataclass(frozen=True)
class Task:
    id: str
    suite: str
    title: str
    statement: str
    test_cmd: str
    hidden_cmd: str
    root: Path

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def hidden(self) -> Path:
        return self.root / "hidden_tests"

    @property
    def solution(self) -> Path:
        return self.root / "solution"


@functools.lru_cache(maxsize=16)
def load_suite(name: str = "basic") -> tuple[Task, ...]:
    """Every task of a suite, sorted by id."""
    folder = SUITES_DIR / name
    if not folder.is_dir():
        from k2probe.core.errors import UsageError

        raise UsageError(f"unknown suite {name!r}", fix=f"shipped suites: {', '.join(suite_names())}")
    tasks = []
    for path in sorted(folder.glob("*/task.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        tasks.append(Task(data["id"], name, data["title"], data["statement"], data["test_cmd"], data["hidden_cmd"],
                          path.parent))
    return tuple(tasks)


def find_task(ref: str) -> Task:
    """A task by `suite/id` or by id in the basic suite."""
    suite, _, task_id = ref.rpartition("/")
    for task in load_suite(suite or "basic"):
        if task.id == task_id:
            return task
    from k2probe.core.errors import UsageError

    raise UsageError(f"unknown task {ref!r}", fix="list them with: k2probe agent --list-tasks")


@functools.lru_cache(maxsize=1)
def suite_names() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in SUITES_DIR.iterdir() if p.is_dir() and any(p.glob("*/task.toml"))))


def task_in_text(text: str) -> Task | None:
    """The shipped task whose statement appears in `text` (how the emulator recognises what it is asked)."""
    for name in suite_names():
        for task in load_suite(name):
            if task.statement in text:
                return task
    return None
