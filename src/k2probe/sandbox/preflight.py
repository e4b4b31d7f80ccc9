"""Prove a task's harness on this machine before any model is judged by it: the untouched repository must fail the
hidden tests and the reference solution must pass them. A preflight that does not hold makes the attempt `error`."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2probe import __version__
from k2probe.core.config import home
from k2probe.core.liveness import mark_owner
from k2probe.core.sharedfile import SharedFileBusy, read_json, update_json
from k2probe.sandbox.isolation import Isolation, Limits, make_readable, run
from k2probe.sandbox.outcome import Verification, judge
from k2probe.sandbox.runtime import Runtime
from k2probe.tasks.shipped import Task

CACHE_FILE = "preflight.json"


@dataclass
class Preflight:
    task: str
    ok: bool
    detail: str
    untouched: Verification
    solved: Verification

    def as_json(self) -> dict[str, Any]:
        return {"task": self.task, "ok": self.ok, "detail": self.detail, "untouched": self.untouched.as_json(),
                "solved": self.solved.as_json()}


def _check(folder: Path, task: Task, iso: Isolation, limits: Limits, runtime: Runtime) -> Verification:
    make_readable(folder)
    lay = {task.hidden.name: task.hidden} if task.has_hidden else {}
    result = run(task.verify_cmd, folder, limits, iso, lay=lay, runtime=runtime)
    return judge(result, "hidden tests" if task.has_hidden else "tests", runtime, limits)


def preflight(task: Task, iso: Isolation, limits: Limits | None = None, runtime: Runtime | None = None) -> Preflight:
    """Run the hidden tests on the untouched repository and on the repository with the solution laid over it."""
    limits = limits or Limits()
    runtime = runtime or Runtime.own()
    work = Path(tempfile.mkdtemp(prefix="k2probe-preflight-"))
    mark_owner(work)
    try:
        untouched_dir, solved_dir = work / "untouched" / "repo", work / "solved" / "repo"
        shutil.copytree(task.repo, untouched_dir)
        untouched = _check(untouched_dir, task, iso, limits, runtime)
        solved = Verification("skipped", "no solution/ to prove that a fix can pass", task.verify_cmd)
        if task.has_solution:
            shutil.copytree(task.repo, solved_dir)
            shutil.copytree(task.solution, solved_dir, dirs_exist_ok=True)
            solved = _check(solved_dir, task, iso, limits, runtime)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ref = f"{task.suite}/{task.id}"
    if untouched.status == "error" or solved.status == "error":
        bad = untouched if untouched.status == "error" else solved
        return Preflight(ref, False, f"the harness cannot run here: {bad.reason}", untouched, solved)
    if untouched.passed:
        return Preflight(ref, False, "the untouched repository already passes the hidden tests", untouched, solved)
    if not task.has_solution:
        return Preflight(ref, True, "untouched repository fails its tests (no solution/ to check a fix against)",
                         untouched, solved)
    if not solved.passed:
        return Preflight(ref, False, f"the reference solution does not pass: {solved.reason}", untouched, solved)
    return Preflight(ref, True, "untouched repository fails the hidden tests, the solution passes", untouched, solved)


def _fingerprint(task: Task, iso: Isolation, runtime: Runtime) -> str:
    digest = hashlib.sha256(f"{__version__}\0{runtime.python}\0{runtime.path}\0{iso.sandbox}".encode())
    for path in sorted(p for p in task.root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(task.root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def preflight_failure(task: Task, iso: Isolation, runtime: Runtime) -> Preflight | None:
    """None when this task's harness was proven on this machine, with this interpreter, before; else the preflight
    (a passing one is remembered in $K2PROBE_HOME/preflight.json)."""
    path = home() / CACHE_FILE
    key = _fingerprint(task, iso, runtime)
    if key in _proven(read_json(path, [])):
        return None
    result = preflight(task, iso, runtime=runtime)
    if result.ok:  # added under the file's lock to what is there now: a preflight beside this one is kept too
        with contextlib.suppress(SharedFileBusy):
            update_json(path, lambda now: sorted(_proven(now) | {key}), [])
        return None
    return result


def _proven(value: object) -> set[str]:
    """The fingerprints a preflight.json holds (a damaged file holds none)."""
    return {k for k in value if isinstance(k, str)} if isinstance(value, list) else set()
