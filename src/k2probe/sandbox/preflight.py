"""Prove a task's harness on this machine before any model is judged by it: the untouched repository must fail the
hidden tests and the reference solution must pass them. A preflight that does not hold makes the attempt `error`.

It also fixes which hidden tests there are: the ids (and outcomes) the reference solution reports, kept in
$K2PROBE_HOME/expected-tests/, are what every later guarded verification must report, each exactly once."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from k2probe import __version__
from k2probe.core.config import home
from k2probe.core.liveness import mark_owner
from k2probe.core.sharedfile import SharedFileBusy, read_json, update_json, write_json
from k2probe.sandbox.copying import copy_tree
from k2probe.sandbox.guardcmd import is_guarded
from k2probe.sandbox.guarded import Expected, GuardedRun, run_hidden
from k2probe.sandbox.isolation import Isolation, Limits, run
from k2probe.sandbox.outcome import Verification, judge
from k2probe.sandbox.runtime import Runtime

CACHE_FILE = "preflight.json"
EXPECTED_DIR = "expected-tests"


class HarnessTask(Protocol):
    """What a preflight needs of a task (tasks/shipped.py's Task is one): its folders and the command that judges it.
    A protocol, so the sandbox layer does not import the tasks layer above it."""

    @property
    def id(self) -> str: ...

    @property
    def suite(self) -> str: ...

    @property
    def root(self) -> Path: ...

    @property
    def repo(self) -> Path: ...

    @property
    def hidden(self) -> Path: ...

    @property
    def solution(self) -> Path: ...

    @property
    def has_hidden(self) -> bool: ...

    @property
    def has_solution(self) -> bool: ...

    @property
    def verify_cmd(self) -> str: ...


@dataclass
class Preflight:
    task: str
    ok: bool
    detail: str
    untouched: Verification
    solved: Verification
    expected: dict[str, str] | None = None  # the hidden tests' ids and outcomes, when they could be known

    def as_json(self) -> dict[str, Any]:
        return {"task": self.task, "ok": self.ok, "detail": self.detail, "untouched": self.untouched.as_json(),
                "solved": self.solved.as_json(), "expected_tests": sorted(self.expected or {})}


def _check(folder: Path, task: HarnessTask, iso: Isolation, limits: Limits, runtime: Runtime) -> GuardedRun:
    """The task's verification command on `folder`: guarded when it is k2probe's pytest runner, else by exit status."""
    if task.has_hidden and is_guarded(task.verify_cmd):
        return run_hidden(folder, task.hidden, limits, iso, runtime, None, task.verify_cmd)
    lay = {task.hidden.name: task.hidden} if task.has_hidden else {}
    result = run(task.verify_cmd, folder, limits, iso, lay=lay, runtime=runtime)
    return GuardedRun(judge(result, "hidden tests" if task.has_hidden else "tests", runtime, limits, iso))


def _expected(task: HarnessTask, untouched: GuardedRun, solved: GuardedRun | None) -> dict[str, str] | None:
    """The tests a fix must pass: what the reference solution reported; without one, what the untouched repository
    collected (unknown if it could not collect them all)."""
    if not (task.has_hidden and is_guarded(task.verify_cmd)):
        return None
    if solved is not None:
        return dict(solved.outcomes) if solved.verification.passed and solved.outcomes else None
    if untouched.collect_errors or not untouched.outcomes:
        return None
    return {name: "passed" for name in untouched.outcomes}


def preflight(task: HarnessTask, iso: Isolation, limits: Limits | None = None, runtime: Runtime | None = None) -> Preflight:
    """Run the hidden tests on the untouched repository and on the repository with the solution laid over it."""
    limits = limits or Limits()
    runtime = runtime or Runtime.own()
    work = Path(tempfile.mkdtemp(prefix="k2probe-preflight-"))
    mark_owner(work)
    try:
        untouched_dir, solved_dir = work / "untouched" / "repo", work / "solved" / "repo"
        copy_tree(task.repo, untouched_dir)
        untouched_run = _check(untouched_dir, task, iso, limits, runtime)
        untouched = untouched_run.verification
        solved = Verification("skipped", "no solution/ to prove that a fix can pass", task.verify_cmd)
        solved_run = None
        if task.has_solution:
            copy_tree(task.repo, solved_dir)
            copy_tree(task.solution, solved_dir, merge=True)
            solved_run = _check(solved_dir, task, iso, limits, runtime)
            solved = solved_run.verification
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ref = f"{task.suite}/{task.id}"
    if untouched.status == "error" or solved.status == "error":
        bad = untouched if untouched.status == "error" else solved
        return Preflight(ref, False, f"the harness cannot run here: {bad.reason}", untouched, solved)
    if untouched.passed:
        return Preflight(ref, False, "the untouched repository already passes the hidden tests", untouched, solved)
    expected = _expected(task, untouched_run, solved_run)
    if not task.has_solution:
        _remember(task, iso, runtime, expected)
        return Preflight(ref, True, "untouched repository fails its tests (no solution/ to check a fix against)",
                         untouched, solved, expected)
    if not solved.passed:
        return Preflight(ref, False, f"the reference solution does not pass: {solved.reason}", untouched, solved)
    _remember(task, iso, runtime, expected)
    return Preflight(ref, True, "untouched repository fails the hidden tests, the solution passes", untouched, solved,
                     expected)


def _expected_path(task: HarnessTask, iso: Isolation, runtime: Runtime) -> Path:
    return home() / EXPECTED_DIR / f"{_fingerprint(task, iso, runtime)}.json"


def _remember(task: HarnessTask, iso: Isolation, runtime: Runtime, expected: dict[str, str] | None) -> None:
    """Keep the expected tests by the task's fingerprint; written whole and renamed into place (never half a file)."""
    path = _expected_path(task, iso, runtime)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"task": f"{task.suite}/{task.id}", "expected": expected})


def expected_tests(task: HarnessTask, iso: Isolation, runtime: Runtime) -> Expected | None:
    """The hidden tests a verification of `task` must report, as its preflight found them (run again if it is not
    remembered); None when they cannot be known (no solution, and the untouched repository does not collect)."""
    data = read_json(_expected_path(task, iso, runtime), None)
    if not isinstance(data, dict):
        return preflight(task, iso, runtime=runtime).expected
    found = data.get("expected")
    if isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        return found
    return None


def _regular_files(root: Path) -> list[Path]:
    """The task's regular files (links not followed, special files and caches left out), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not os.path.islink(os.path.join(folder, d))]
        found += [Path(folder, name) for name in files if stat.S_ISREG(os.lstat(os.path.join(folder, name)).st_mode)]
    return sorted(found)


def _fingerprint(task: HarnessTask, iso: Isolation, runtime: Runtime) -> str:
    digest = hashlib.sha256(f"{__version__}\0{runtime.python}\0{runtime.path}\0{iso.sandbox}".encode())
    for path in _regular_files(task.root):
        digest.update(str(path.relative_to(task.root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def preflight_failure(task: HarnessTask, iso: Isolation, runtime: Runtime) -> Preflight | None:
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
