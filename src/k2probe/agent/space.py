"""Where an agent attempt's workspace lives and its tools run: on this machine (`LocalSpace`: a private copy, every
command through the executor), or on one node of a Ray cluster (agent/ray_space.py: an actor holding the workspace
there). The loop asks a space for tool calls and the runner for the final check and the diff; neither touches the
workspace itself, so both work the same wherever it is."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from k2probe.agent.tools import Toolbox, ToolOutput
from k2probe.agent.workspace import Workspace
from k2probe.sandbox.guardcmd import is_guarded
from k2probe.sandbox.isolation import Limits
from k2probe.sandbox.outcome import Verification
from k2probe.sandbox.runtime import Runtime

if TYPE_CHECKING:
    from k2probe.sandbox.executor import Executor
    from k2probe.sandbox.guarded import Expected


class NodeLost(Exception):
    """The machine holding an attempt's workspace went away mid-attempt: the harness's `error`, naming the machine,
    never the model's `failed`."""


@dataclass(frozen=True)
class Checks:
    """How an attempt's final state is judged: the hidden tests (laid in by the sandbox, never written through the
    workspace) under their command, else the task's own test command."""

    test_cmd: str
    hidden_cmd: str | None
    hidden: Path | None
    runtime: Runtime

    @property
    def command(self) -> str:
        return self.hidden_cmd or self.test_cmd

    @property
    def guarded(self) -> bool:
        """Run under k2probe's guarded pytest runner (checked against the tests the preflight found)."""
        return self.hidden is not None and is_guarded(self.command)


async def final_check(root: Path, checks: Checks, limits: Limits, executor: Executor,
                      expected: Expected | None) -> Verification:
    """The hidden tests (or the test command) on a fresh private copy of the workspace at `root`; any command but the
    guarded runner is judged by its exit status only."""
    if checks.guarded and checks.hidden is not None:
        return await executor.hidden(root, checks.hidden, limits, checks.runtime, expected, checks.command)
    lay = {checks.hidden.name: checks.hidden} if checks.hidden is not None else {}
    which = "hidden tests" if checks.hidden else "tests"
    return (await executor.test(checks.command, root, limits, checks.runtime, which, lay=lay, probe=True))[1]


class Space(Protocol):
    """One attempt's workspace and toolbox, wherever they are. `node` names the cluster node holding them (None:
    this machine). A method raises NodeLost when that node went away."""

    node: str | None

    async def call(self, name: str, raw_arguments: str) -> ToolOutput: ...

    async def check(self, limits: Limits, expected: Expected | None) -> Verification: ...

    async def diff(self) -> str: ...

    async def close(self) -> None: ...


class LocalSpace:
    """The workspace a private copy on this machine; tool calls, test runs and the final check through `executor`."""

    node: str | None = None

    def __init__(self, workspace: Workspace, checks: Checks, limits: Limits, executor: Executor,
                 deadline: float | None) -> None:
        self.workspace, self.checks, self.executor = workspace, checks, executor
        self.toolbox = Toolbox(workspace, checks.test_cmd, limits, deadline=deadline, runtime=checks.runtime,
                               executor=executor)

    @classmethod
    async def open(cls, repo: Path, checks: Checks, limits: Limits, executor: Executor,
                   deadline: float | None) -> LocalSpace:
        """A private copy of `repo` (made off the loop)."""
        return cls(await asyncio.to_thread(Workspace, repo), checks, limits, executor, deadline)

    async def call(self, name: str, raw_arguments: str) -> ToolOutput:
        return await self.toolbox.call(name, raw_arguments)

    async def check(self, limits: Limits, expected: Expected | None) -> Verification:
        return await final_check(self.workspace.root, self.checks, limits, self.executor, expected)

    async def diff(self) -> str:
        return await self.executor.diff(self.workspace)

    async def close(self) -> None:
        await asyncio.to_thread(self.workspace.cleanup)


async def open_space(executor: Executor, repo: Path, checks: Checks, limits: Limits, deadline: float) -> Space:
    """The attempt's space: on a cluster's node when the executor is a Ray cluster's, else here. `deadline` is this
    machine's time.monotonic() by which test runs must end."""
    from k2probe.sandbox.ray_executor import RayExecutor

    if isinstance(executor, RayExecutor):
        from k2probe.agent.ray_space import RaySpace

        return await RaySpace.open(executor, repo, checks, limits, deadline)
    return await LocalSpace.open(repo, checks, limits, executor, deadline)
