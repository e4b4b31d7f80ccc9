"""Where model-written code runs and its workspace is touched: one async seam (`Executor`), chosen by `--sandbox`.

Every method awaits: the blocking work (a sandboxed test run, a preflight, a file read) goes to a worker thread, so a
2 s test run in one sample never freezes the event loop every other sample's stream and timing share. `bubblewrap`
runs commands in the sandbox (sandbox/isolation.py's `run`, which makes the workspace readable to the sandbox's own
uid itself: no caller has to remember it); `none` runs them on a throwaway host copy, as accepted by the user."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from k2probe.sandbox.isolation import Isolation, Limits, SandboxResult, isolation, run
from k2probe.sandbox.outcome import Verification, judge
from k2probe.sandbox.runtime import Runtime

if TYPE_CHECKING:
    from k2probe.sandbox.guarded import Expected
    from k2probe.sandbox.preflight import HarnessTask, Preflight
    from k2probe.sandbox.programs import Program, ProgramVerdict


class Files(Protocol):
    """What an executor needs of a workspace (agent/workspace.py's Workspace is one): its root and safe file access."""

    root: Path

    def read_bytes(self, relative: str, limit: int) -> bytes: ...

    def write_bytes(self, relative: str, data: bytes) -> None: ...

    def regular_files(self, relative: str) -> tuple[list[Path], int]: ...

    def diff(self) -> str: ...


class Executor(Protocol):
    """Runs commands on a workspace (with limits) and touches its files, never blocking the event loop."""

    isolation: Isolation

    async def exec(self, command: str, folder: Path, limits: Limits, runtime: Runtime, *,
                   lay: Mapping[str, Path] | None = None) -> SandboxResult: ...

    async def test(self, command: str, folder: Path, limits: Limits, runtime: Runtime, which: str, *,
                   lay: Mapping[str, Path] | None = None, probe: bool = False) -> tuple[SandboxResult, Verification]:
        ...

    async def hidden(self, folder: Path, hidden: Path, limits: Limits, runtime: Runtime,
                     expected: Expected | None, shown: str) -> Verification: ...

    async def expected(self, task: HarnessTask, runtime: Runtime) -> Expected | None: ...

    async def preflight(self, task: HarnessTask, runtime: Runtime) -> Preflight | None: ...

    async def read(self, files: Files, relative: str, limit: int) -> bytes: ...

    async def write(self, files: Files, relative: str, data: bytes) -> None: ...

    async def list(self, files: Files, relative: str) -> tuple[list[Path], int]: ...

    async def diff(self, files: Files) -> str: ...

    async def program(self, key: str, program: Program) -> ProgramVerdict:
        """A generated program judged by a trusted checker in a sandbox of its own (HumanEval's way): never raises,
        a failing harness is an `error` verdict."""
        ...


class LocalExecutor:
    """This machine: commands through sandbox/isolation.py's `run` (bubblewrap or, accepted, none), off the loop."""

    def __init__(self, iso: Isolation) -> None:
        self.isolation = iso

    def _exec(self, command: str, folder: Path, limits: Limits, runtime: Runtime,
              lay: Mapping[str, Path] | None) -> SandboxResult:
        return run(command, folder, limits, self.isolation, lay=lay, runtime=runtime)

    async def exec(self, command: str, folder: Path, limits: Limits, runtime: Runtime, *,
                   lay: Mapping[str, Path] | None = None) -> SandboxResult:
        return await asyncio.to_thread(self._exec, command, folder, limits, runtime, lay)

    async def test(self, command: str, folder: Path, limits: Limits, runtime: Runtime, which: str, *,
                   lay: Mapping[str, Path] | None = None, probe: bool = False) -> tuple[SandboxResult, Verification]:
        """A test command's run and its verdict; with `probe`, a failure is `error` when an empty sandbox shows the
        harness cannot run the command here (sandbox/outcome.py), that probe off the loop too."""
        def tested() -> tuple[SandboxResult, Verification]:
            result = self._exec(command, folder, limits, runtime, lay)
            return result, judge(result, which, runtime, limits, self.isolation if probe else None)
        return await asyncio.to_thread(tested)

    async def hidden(self, folder: Path, hidden: Path, limits: Limits, runtime: Runtime,
                     expected: Expected | None, shown: str) -> Verification:
        from k2probe.sandbox.guarded import run_hidden

        def guarded() -> Verification:
            return run_hidden(folder, hidden, limits, self.isolation, runtime, expected, shown).verification
        return await asyncio.to_thread(guarded)

    async def expected(self, task: HarnessTask, runtime: Runtime) -> Expected | None:
        from k2probe.sandbox.preflight import expected_tests

        return await asyncio.to_thread(expected_tests, task, self.isolation, runtime)

    async def preflight(self, task: HarnessTask, runtime: Runtime) -> Preflight | None:
        from k2probe.sandbox.preflight import preflight_failure

        return await asyncio.to_thread(preflight_failure, task, self.isolation, runtime)

    async def read(self, files: Files, relative: str, limit: int) -> bytes:
        return await asyncio.to_thread(files.read_bytes, relative, limit)

    async def write(self, files: Files, relative: str, data: bytes) -> None:
        await asyncio.to_thread(files.write_bytes, relative, data)

    async def list(self, files: Files, relative: str) -> tuple[list[Path], int]:
        return await asyncio.to_thread(files.regular_files, relative)

    async def diff(self, files: Files) -> str:
        return await asyncio.to_thread(files.diff)

    async def program(self, key: str, program: Program) -> ProgramVerdict:
        """Judged by this machine's shared pool of checkers (sandbox/programs.py), as samples come: a slow test never
        stalls another sample, and no two programs share a process, a folder or a pid namespace."""
        from k2probe.core.results import Outcome
        from k2probe.sandbox.programs import ProgramVerdict, submit

        try:
            return await asyncio.wrap_future(submit(key, program, iso=self.isolation))
        except Exception as exc:
            return ProgramVerdict(Outcome.ERROR, f"verification failed: {type(exc).__name__}: {exc}")


class BubblewrapExecutor(LocalExecutor):
    """Commands in bubblewrap (`run` makes the workspace readable to the sandbox's own uid before each one)."""


class NoneExecutor(LocalExecutor):
    """--sandbox none: commands on a throwaway host copy, unisolated, as the user accepted."""


EXECUTORS: dict[str, type[LocalExecutor]] = {"bubblewrap": BubblewrapExecutor, "none": NoneExecutor}


def executor_for(iso: Isolation) -> Executor:
    """The executor that gives the isolation `iso` describes."""
    return EXECUTORS[iso.sandbox](iso)


def executor_of(mode: str, where: str = "local", address: str | None = None) -> Executor:
    """The executor for `--sandbox MODE` on `--executor WHERE`: this machine, or a Ray cluster's nodes."""
    iso = isolation(mode)
    if where == "local":
        return executor_for(iso)
    if where == "ray":
        from k2probe.sandbox.ray_executor import RayExecutor

        return RayExecutor(iso, mode, address)
    from k2probe.core.errors import UsageError

    raise UsageError(f"--executor {where!r} is not one of local, ray", fix="use --executor local or --executor ray")


def executor(mode: str = "auto") -> Executor:
    """The executor `--sandbox MODE` asks for (SandboxUnavailable when isolation is asked for but missing)."""
    return executor_for(isolation(mode))
