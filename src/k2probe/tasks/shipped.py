"""Repository task suites — shipped ones and the user's own: a statement, a repository, a test command, and optionally
hidden tests and a solution.

Each task folder holds `task.toml`, `repo/` (what the agent starts from), `hidden_tests/` (copied in only to verify,
never shown to the model) and `solution/` (the files a correct fix ends with: the emulator's scripted model uses it).
A user suite is any folder with a `suite.toml` (`name`, and defaults for `test_cmd` / `hidden_cmd`) and such task
folders; it is named on the command line by its path.
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from k2probe.sandbox.guardcmd import HIDDEN_CMD  # the guarded runner's line, a suite's default hidden_cmd

SUITES_DIR = Path(__file__).parent / "suites"


@dataclass(frozen=True)
class Task:
    id: str
    suite: str
    title: str
    statement: str
    test_cmd: str
    hidden_cmd: str | None
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

    @property
    def has_hidden(self) -> bool:
        return self.hidden.is_dir()

    @property
    def has_solution(self) -> bool:
        return self.solution.is_dir()

    @property
    def verify_cmd(self) -> str:
        """What judges the work: the hidden tests' command, else the task's own test command."""
        return self.hidden_cmd if self.has_hidden and self.hidden_cmd else self.test_cmd


SUITE_FOLDERS = ("repo", "hidden_tests", "solution")


def _field(data: dict[str, object], name: str, where: Path, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value.strip():
        from k2probe.core.errors import UsageError

        raise UsageError(f"{where}: `{name}` is missing or not a string", fix=f'add {name} = "..." to {where.name}')
    return value


def _read_toml(path: Path) -> dict[str, object]:
    from k2probe.core.errors import UsageError
    from k2probe.core.files import read_text

    text = read_text(path, f"the suite file {path.name}", limit=16 * 1024 * 1024)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: {exc}", fix="fix the file (TOML)") from exc


def _refuse_unsafe(task: Path) -> None:
    """UsageError naming the first link or special file (device node, FIFO, socket) in a task — its folder, its
    task.toml, or anywhere in repo/, hidden_tests/, solution/ — found without following or reading anything."""
    from k2probe.core.errors import UsageError
    from k2probe.sandbox.copying import UnsafeEntry, first_unsafe, kind_of

    fix = "a suite may hold only regular files and folders: replace it by a copy of what it points to, or remove it"
    found: UnsafeEntry | None = None
    for path in (task, task / "task.toml"):
        kind = kind_of(os.lstat(path).st_mode)
        if kind is not None:
            found = UnsafeEntry(path, kind)
            break
    for name in SUITE_FOLDERS:
        if found is None and os.path.lexists(task / name):
            found = first_unsafe(task / name)
    if found is not None:
        raise UsageError(f"{found.path} is {found.kind}", fix=fix)


@functools.lru_cache(maxsize=16)
def load_user_suite(folder: Path) -> tuple[Task, ...]:
    """A user suite: `suite.toml` plus one folder per task, each with `task.toml` and `repo/`. A link or a special
    file anywhere in a task is refused before anything of it is read."""
    from k2probe.core.errors import UsageError
    from k2probe.sandbox.copying import kind_of

    if (kind := kind_of(os.lstat(folder / "suite.toml").st_mode)) is not None:
        raise UsageError(f"{folder / 'suite.toml'} is {kind}", fix="make suite.toml a regular file")
    meta = _read_toml(folder / "suite.toml")
    name = _field(meta, "name", folder / "suite.toml", folder.name)
    tasks = []
    for path in sorted(folder.glob("*/task.toml")):
        _refuse_unsafe(path.parent)
        data = _read_toml(path)
        if not (path.parent / "repo").is_dir():
            raise UsageError(f"{path.parent}: no repo/ folder", fix="put the repository the agent starts from in repo/")
        test_default = meta.get("test_cmd")
        default_test = test_default if isinstance(test_default, str) else None
        hidden_default = meta.get("hidden_cmd")
        default_hidden = hidden_default if isinstance(hidden_default, str) else HIDDEN_CMD
        tasks.append(Task(_field(data, "id", path, path.parent.name), name, _field(data, "title", path, path.parent.name),
                          _field(data, "statement", path), _field(data, "test_cmd", path, default_test),
                          str(data.get("hidden_cmd") or default_hidden), path.parent))
    if not tasks:
        raise UsageError(f"{folder}: no task folders (*/task.toml)", fix="add one folder per task with a task.toml")
    return tuple(tasks)


def is_user_suite(ref: str) -> bool:
    return (Path(ref) / "suite.toml").is_file()

@functools.lru_cache(maxsize=16)
def load_suite(name: str = "basic") -> tuple[Task, ...]:
    """Every task of a suite (shipped, or a user suite's folder), sorted by id."""
    if is_user_suite(name):
        return load_user_suite(Path(name).resolve())
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
