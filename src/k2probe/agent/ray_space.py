"""An agent attempt's workspace on one node of a Ray cluster: an actor, pinned to the node the executor places it on,
holds the workspace and its toolbox there and runs every tool call, test run and the final hidden-test check with that
node's sandbox. The model is asked from the driver (the route's key never leaves it); only the task's files, the
model's tool calls and their results cross. The actor gets the task's files as bytes (any suite, wherever it is on the
driver), never a key or an environment, and is killed when the attempt ends, whatever happened (the folders of one
killed before it could remove them are removed by the next attempt on its node).

A node that dies before the attempt's first model call costs nothing: the attempt is placed on another node. After
it, the attempt ends as the harness's `error` naming the node (NodeLost): its model calls are not paid for again, and
the workspace they built is gone with the node."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import stat
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2probe.agent.space import Checks, LocalSpace, NodeLost
from k2probe.agent.tools import Finished, ToolFailure, ToolOutput
from k2probe.agent.workspace import Workspace, left_out
from k2probe.core.liveness import mark_owner, remove_leftovers
from k2probe.core.raycluster import pinned
from k2probe.sandbox.isolation import Limits
from k2probe.sandbox.outcome import Verification
from k2probe.sandbox.runtime import Runtime

if TYPE_CHECKING:
    from k2probe.sandbox.guarded import Expected
    from k2probe.sandbox.ray_executor import RayExecutor

TRIES = 3  # nodes tried to hold one attempt before its first model call
CLOSE_S = 15.0  # how long a node is given to remove the attempt's folders before its actor is killed anyway
SLACK_S = 180.0  # past the attempt's deadline, how long a silent node is waited for before it counts as lost

Packed = list[tuple[str, str, bytes, int]]  # (relative path, "d" | "f" | "l", content or link target, mode)


def pack(folder: Path) -> Packed:
    """A folder's folders, regular files and links (never followed), caches and special files left out as a workspace
    copy leaves them: what the node rebuilds the task from."""
    found: Packed = []

    def walk(current: Path, prefix: str) -> None:
        names = sorted(os.listdir(current))
        skipped = left_out(str(current), names)
        for name in names:
            if name in skipped:
                continue
            path, relative = current / name, prefix + name
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found.append((relative, "l", os.readlink(path).encode(), 0))
            elif stat.S_ISDIR(info.st_mode):
                found.append((relative, "d", b"", stat.S_IMODE(info.st_mode)))
                walk(path, relative + "/")
            elif stat.S_ISREG(info.st_mode):
                found.append((relative, "f", path.read_bytes(), stat.S_IMODE(info.st_mode)))

    walk(folder, "")
    return found


def unpack(packed: Packed, folder: Path) -> None:
    """Rebuild a packed folder at `folder` (a new one); a path that would leave it is refused."""
    folder.mkdir()
    for relative, kind, data, mode in packed:
        target = folder / relative
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise ValueError(f"packed path {relative!r} leaves its folder")
        if kind == "d":
            target.mkdir(mode=mode | 0o700)
        elif kind == "l":
            target.symlink_to(data.decode())
        else:
            target.write_bytes(data)
            target.chmod(mode | 0o600)


class AttemptHolder:
    """The actor's class, run on the node: the task rebuilt in a private folder, its workspace and toolbox served with
    this node's own sandbox (and interpreter, when the driver's was asked for)."""

    def __init__(self, repo: Packed, hidden: Packed | None, checks: Checks, limits: Limits, mode: str,
                 own_runtime: bool) -> None:
        import ray

        from k2probe.sandbox.executor import executor_for
        from k2probe.sandbox.isolation import isolation

        self.node = str(ray.get_runtime_context().get_node_id())
        with contextlib.suppress(OSError):  # what killed actors (and dead k2probe runs) left on this node goes
            remove_leftovers()
        self.base = Path(tempfile.mkdtemp(prefix="k2probe-ws-task-")).resolve()
        mark_owner(self.base)
        unpack(repo, self.base / "repo")
        if hidden is not None and checks.hidden is not None:
            unpack(hidden, self.base / checks.hidden.name)
        self.checks = replace(checks, hidden=self.base / checks.hidden.name if checks.hidden else None,
                              runtime=Runtime.own() if own_runtime else checks.runtime)
        executor = executor_for(isolation(mode))
        self.space = LocalSpace(Workspace(self.base / "repo"), self.checks, limits, executor, None)

    def where(self, remaining_s: float) -> str:
        """This node's id, once the attempt's deadline is set by this node's clock (`remaining_s` from now)."""
        self.space.toolbox.deadline = time.monotonic() + remaining_s
        return self.node

    async def call(self, name: str, raw_arguments: str) -> tuple[str, Any, str]:
        """A tool call's output, or how it failed, as plain values (ToolFailure and Finished do not cross Ray)."""
        try:
            return "output", await self.space.call(name, raw_arguments), ""
        except ToolFailure as failure:
            return "failure", failure.kind, failure.message
        except Finished as done:
            return "finished", done.summary, ""

    async def check(self, limits: Limits, expected: Expected | None) -> Verification:
        return await self.space.check(limits, expected)

    async def diff(self) -> str:
        return await self.space.diff()

    async def close(self) -> None:
        await self.space.close()
        await asyncio.to_thread(shutil.rmtree, self.base, True)


@functools.cache
def _holder(ray: Any) -> Any:
    """The actor class, made once per process: it holds no CPU in Ray's books (an attempt waits on the model most of
    its life; the executor spreads attempts by count), and neither it nor its calls are retried or restarted by Ray."""
    return ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(AttemptHolder)


class RaySpace:
    """The driver's side: each method one call to the attempt's actor, awaited; a dead actor is NodeLost."""

    def __init__(self, executor: RayExecutor, actor: Any, node: str, deadline: float) -> None:
        self.executor, self.actor, self.node_id, self.deadline = executor, actor, node, deadline
        self.node: str | None = node[:12]

    @classmethod
    async def open(cls, executor: RayExecutor, repo: Path, checks: Checks, limits: Limits,
                   deadline: float) -> RaySpace:
        """An actor holding the attempt's workspace on the node `executor.place` picks, tried on another node when
        the chosen one is gone (no model call has been made yet). An actor that fails on a live node is k2probe's
        failure, raised as is."""
        ray = executor.ray
        repo_files = await asyncio.to_thread(pack, repo)
        hidden_files = await asyncio.to_thread(pack, checks.hidden) if checks.hidden is not None else None
        own = checks.runtime == Runtime.own()
        holder = _holder(ray)
        lost: list[str] = []
        for _ in range(TRIES):
            node = executor.place()
            if node is None:
                break
            actor = holder.options(scheduling_strategy=pinned(node)).remote(
                repo_files, hidden_files, checks, limits, executor.mode, own)
            try:
                await actor.where.remote(deadline - time.monotonic())  # clocks differ: the time left crosses
                return cls(executor, actor, node, deadline)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
                executor.release(node)
                if not isinstance(exc, Exception) or executor.node_alive(node):
                    raise
                lost.append(node[:12])  # the node went away: another one holds the attempt
        raise NodeLost("no Ray node could hold this attempt's workspace"
                       + (f" (lost: {', '.join(lost)})" if lost else " (none is left)"))

    async def _ask(self, ref: Any) -> Any:
        """A call's result; NodeLost naming the node when its actor died (or stopped answering)."""
        ray = self.executor.ray
        try:
            return await asyncio.wait_for(ref, timeout=max(self.deadline - time.monotonic(), 0.0) + SLACK_S)
        except ray.exceptions.RayError as exc:
            if isinstance(exc, ray.exceptions.RayTaskError):  # k2probe's own code raised there: said as it is
                raise
            dead = "" if self.executor.node_alive(self.node_id) else ": the node is dead"
            raise NodeLost(f"the Ray actor holding this attempt's workspace on node {self.node} was lost mid-attempt "
                           f"({type(exc).__name__}{dead})") from exc
        except TimeoutError as exc:
            raise NodeLost(f"the Ray node {self.node} holding this attempt's workspace stopped answering") from exc

    async def call(self, name: str, raw_arguments: str) -> ToolOutput:
        kind, value, message = await self._ask(self.actor.call.remote(name, raw_arguments))
        if kind == "failure":
            raise ToolFailure(value, message)
        if kind == "finished":
            raise Finished(value)
        output: ToolOutput = value
        return output

    async def check(self, limits: Limits, expected: Expected | None) -> Verification:
        verification: Verification = await self._ask(self.actor.check.remote(limits, expected))
        return verification

    async def diff(self) -> str:
        return str(await self._ask(self.actor.diff.remote()))

    async def close(self) -> None:
        """The node removes the attempt's folders (if it can, within CLOSE_S); the actor is killed whatever happens."""
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.actor.close.remote(), timeout=CLOSE_S)
        finally:
            with contextlib.suppress(Exception):  # (an actor already gone)
                self.executor.ray.kill(self.actor, no_restart=True)
            self.executor.release(self.node_id)
