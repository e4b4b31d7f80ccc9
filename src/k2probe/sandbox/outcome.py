"""Whose fault: a test run ends `passed`, `failed` (the model's work ran and the tests said no) or `error` (the harness
or the machine failed: runner not installed, interpreter not executable, command not found, sandbox could not start,
fork refused). An `error` is never counted against the model, and it carries the lines that prove it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from k2probe.sandbox.isolation import Limits, SandboxResult
from k2probe.sandbox.runtime import Runtime

PROOF_CHARS = 4000
_NO_PYTEST = re.compile(r"(?m)^\S*: No module named '?pytest'?\s*$")
_NO_FORK = re.compile(r"(?m)^sh: (?:\d+: )?Cannot fork")
_NOT_FOUND = re.compile(r"ERROR: file or directory not found: (\S+)")
_EXIT = {126: "the test command could not be executed (exit 126: not executable, or a permission problem)",
         127: "the test command or its interpreter was not found (exit 127)"}


def _harness_failure(result: SandboxResult, runtime: Runtime) -> str | None:
    """Why the harness (not the model's work) failed, judged narrowly: each sign must come with its exit code and
    before any test output, so code the model wrote cannot turn its own failure into an `error` by printing one."""
    out, err, code = result.stdout.strip(), result.stderr, result.exit_code
    if code == 125 and "k2probe sandbox:" in err:
        return "the sandbox could not lay the workspace into its private copy (over the disk cap?)"
    if code == 1 and not out and _NO_PYTEST.search(err):
        return f"pytest is not installed for {runtime.python} (pip install pytest, or pass --python with one that has it)"
    if code is not None and code > 0 and not out and _NO_FORK.search(err):
        return "the shell could not fork: the process limit was hit before the tests started"
    if code == 4 and (missing := _NOT_FOUND.search(out + "\n" + err)):
        return f"the test runner found no {missing.group(1)} (a harness or task definition problem)"
    if code in _EXIT and not out:
        return _EXIT[code]
    return None


@dataclass
class Verification:
    """The verdict on one test run, with the tail of its output as evidence."""

    status: str  # passed | failed | error
    reason: str
    command: str
    output: str = ""
    duration_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}

    def proof(self, lines: int = 12) -> list[str]:
        """The last lines of the output: what shows why."""
        return [line for line in self.output.splitlines() if line.strip()][-lines:]


_PYTEST_PASSED = re.compile(r"\b[1-9]\d* passed\b")


def judge(result: SandboxResult, which: str, runtime: Runtime, limits: Limits) -> Verification:
    """`passed`, `failed` or `error` for one run of the tests, with the reason in a line."""
    output = (result.stdout + ("\n" + result.stderr if result.stderr.strip() else ""))[-PROOF_CHARS:]

    def verdict(status: str, reason: str) -> Verification:
        return Verification(status, reason, result.command, output, result.duration_ms)

    if result.passed and "pytest" in result.command and not _PYTEST_PASSED.search(result.stdout):
        # exit 0 without pytest's own summary: the code under test ended the run early (os._exit(0) at import)
        return verdict("failed", f"{which} exited 0 without pytest reporting any passed test")
    if result.passed:
        return verdict("passed", f"{which} passed")
    harness = _harness_failure(result, runtime)
    if harness is not None:
        return verdict("error", harness)
    if result.timed_out:
        return verdict("failed", f"{which} timed out after {limits.wall_s:.0f} s")
    return verdict("failed", f"{which} failed: {result.summary()}")
