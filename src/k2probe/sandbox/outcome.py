"""Whose fault: a test run ends `passed`, `failed` (the model's work ran and the tests said no) or `error` (the harness
or the machine failed: runner not installed, interpreter not executable, command not found, sandbox could not start,
fork refused). An `error` is never counted against the model, and it carries the lines that prove it.

Printed text never decides a verdict: the model's code prints what it likes. A custom test command is judged by its
exit status only ("unguarded"); when it fails, `error` needs a probe that k2probe runs itself, in an empty sandbox with
none of the model's code, showing the command's own program (or pytest) cannot run there."""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from k2probe.sandbox.isolation import Isolation, Limits, SandboxResult, run
from k2probe.sandbox.runtime import Runtime

PROOF_CHARS = 4000
UNGUARDED = "unguarded: exit status only (a custom test command cannot be instrumented)"
_PYTHONS = ("python", "python3")


@dataclass
class Verification:
    """The verdict on one test run, with the tail of its output as evidence."""

    status: str  # passed | failed | error
    reason: str
    command: str
    output: str = ""
    duration_ms: float = 0.0
    guard: str = ""  # how the verdict was obtained: guarded (records checked against exit status) or unguarded
    tampering: bool = False  # the code under test bent the run: scored failed, never passed nor error

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}

    def proof(self, lines: int = 12) -> list[str]:
        """The last lines of the output: what shows why."""
        return [line for line in self.output.splitlines() if line.strip()][-lines:]


def _program(command: str) -> tuple[str, bool] | None:
    """The program a shell line starts (after VAR=value words), and whether it runs pytest; None when that cannot be
    told (a shell construct, a script of the repository's own: the model's)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    while words and "=" in words[0] and not words[0].startswith("="):
        words.pop(0)
    if not words or ("/" in words[0] and not words[0].startswith("/")):
        return None
    name = words[0]
    if any(c in name for c in "$`;|&<>(){}*?[]") or name in {"cd", "exec", "env", "if", "for", "while", "[", "test"}:
        return None
    via_python = Path(name).name.startswith(_PYTHONS) and words[1:3] == ["-m", "pytest"]
    return name, via_python


def probe(command: str, runtime: Runtime, limits: Limits, iso: Isolation) -> tuple[str, str] | None:
    """(why, output) when the harness itself cannot run `command` here: run in an empty sandbox, with none of the
    model's code, its program must be found and executable, and pytest importable when it runs `-m pytest`."""
    found = _program(command)
    if found is None:
        return None
    name, via_python = found
    word = shlex.quote(name)
    check = (f'command -v {word} >/dev/null || {{ echo "k2probe probe: {word}: not found" >&2; exit 127; }}; '
             f'[ -x "$(command -v {word})" ] || {{ echo "k2probe probe: {word}: not executable" >&2; exit 126; }}')
    if via_python:
        check += f"; {word} -m pytest --version >/dev/null"
    with tempfile.TemporaryDirectory(prefix="k2probe-run-") as empty:
        folder = Path(empty) / "probe"
        folder.mkdir()
        Path(empty).chmod(0o755)
        folder.chmod(0o755)
        result = run(check, folder, limits.within(min(limits.wall_s, 60.0)), iso, runtime=runtime)
    shown = (result.stdout + result.stderr).strip()[-PROOF_CHARS:]
    if result.exit_code == 127:
        return f"the test command's program {name} was not found (exit 127)", shown
    if result.exit_code == 126:
        return f"the test command's program {name} could not be executed (exit 126)", shown
    if result.exit_code != 0 and via_python and "No module named pytest" in result.stderr:
        return f"pytest is not installed for {runtime.python} (pip install pytest, or pass --python with one that " \
               "has it)", shown
    if result.exit_code != 0 and not result.timed_out:
        return f"the harness could not run even an empty check here ({result.summary()})", shown
    return None


def judge(result: SandboxResult, which: str, runtime: Runtime, limits: Limits,
          iso: Isolation | None = None) -> Verification:
    """`passed`, `failed` or `error` for one run of a test command, by its exit status; `error` only when `iso` is
    given and the probe shows the harness cannot run the command here (without it, a failure is `failed`)."""
    output = (result.stdout + ("\n" + result.stderr if result.stderr.strip() else ""))[-PROOF_CHARS:]

    def verdict(status: str, reason: str, extra: str = "") -> Verification:
        shown = (output + ("\n" + extra if extra else ""))[-PROOF_CHARS:]
        return Verification(status, reason, result.command, shown, result.duration_ms, UNGUARDED)

    if result.passed:
        return verdict("passed", f"{which} passed")
    if result.timed_out:  # it started and ran (on the model's code) to the limit: no probe, no time past the deadline
        return verdict("failed", f"{which} timed out after {limits.wall_s:.0f} s")
    if iso is not None and (harness := probe(result.command, runtime, limits, iso)) is not None:
        return verdict("error", harness[0], f"k2probe's own check, without the model's code:\n{harness[1]}")
    return verdict("failed", f"{which} failed: {result.summary()}")
