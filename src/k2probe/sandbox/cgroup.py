"""A memory cap across all of a sandbox's processes together (RLIMIT_AS caps each process alone: N forks × the cap
would pass): a memory cgroup of the sandbox's own, made under k2probe's own cgroup (cgroup v1's memory controller, or
cgroup v2 where k2probe's cgroup may hand the memory controller down), removed when the sandbox ends.

Standard library only: a checker worker (sandbox/checker.py) uses it too."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "k2probe-"


@functools.cache
def _own() -> tuple[Path, int] | tuple[None, str]:
    """k2probe's own memory cgroup folder and its version (1 or 2), or None and why there is none."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError as exc:
        return None, f"cannot read /proc/self/cgroup: {exc}"
    unified = None
    for line in lines:
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        if "memory" in controllers.split(","):
            folder = ROOT / "memory" / path.lstrip("/")
            if (folder / "memory.limit_in_bytes").is_file():
                return folder, 1
        if hierarchy == "0" and controllers == "":
            unified = path
    for base in (ROOT, ROOT / "unified"):
        if unified is not None and (base / "cgroup.controllers").is_file():
            folder = base / unified.lstrip("/")
            if "memory" in _read(folder / "cgroup.controllers").split():
                subtree = folder / "cgroup.subtree_control"
                if "memory" not in _read(subtree).split():
                    with contextlib.suppress(OSError):  # refused while k2probe's own cgroup holds processes
                        subtree.write_text("+memory")
                if "memory" in _read(subtree).split():
                    return folder, 2
    return None, "no memory cgroup k2probe may divide (cgroup v1 memory controller or cgroup v2 with memory)"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@functools.cache
def problem() -> str | None:
    """Why sandboxes get no memory cap across their processes here (None when they do): tried once, for real."""
    try:
        probe = create(64 * 1024**2)
    except OSError as exc:
        return f"cannot make a memory cgroup: {exc.strerror or exc}"
    if probe is None:
        found = _own()
        return str(found[1]) if found[0] is None else "no memory cgroup"
    remove(probe)
    return None


_LEFT: list[Path] = []  # removed later: their last processes were still exiting (a pid namespace ends asynchronously)


def create(cap_bytes: int) -> Path | None:
    """A new memory cgroup capped at `cap_bytes` (swap included), or None where there is no memory cgroup."""
    own, version = _own()
    if own is None:
        return None
    for left in list(_LEFT):
        if remove(left, wait_s=0.0):
            _LEFT.remove(left)
    folder = own / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        if version == 1:
            (folder / "memory.limit_in_bytes").write_text(str(cap_bytes))
            with contextlib.suppress(OSError):  # only where swap is accounted
                (folder / "memory.memsw.limit_in_bytes").write_text(str(cap_bytes))
        else:
            (folder / "memory.max").write_text(str(cap_bytes))
            with contextlib.suppress(OSError):
                (folder / "memory.swap.max").write_text("0")
    except OSError:
        remove(folder)
        raise
    return folder


def join(folder: Path) -> None:
    """Move the calling process into `folder` (from a preexec function: its children all start inside)."""
    with open(folder / "cgroup.procs", "w") as handle:
        handle.write(str(os.getpid()))


def oom_kills(folder: Path) -> int:
    """How many processes the kernel killed in `folder` for going over its cap."""
    for name in ("memory.oom_control", "memory.events"):
        for line in _read(folder / name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return 0


def release(folder: Path) -> None:
    """Remove `folder` now if it is empty, else at a later `create` (or `sweep`, once this process is gone)."""
    if not remove(folder, wait_s=0.0):
        _LEFT.append(folder)


def remove_left() -> None:
    """Remove the cgroups `release` could not remove at once (at the process's end)."""
    while _LEFT:
        remove(_LEFT.pop())


def remove(folder: Path, wait_s: float = 2.0) -> bool:
    """Kill whatever is left in `folder` and remove it; False when it could not be removed in time."""
    deadline = time.monotonic() + wait_s
    while True:
        for pid in _read(folder / "cgroup.procs").split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)


def sweep() -> None:
    """Remove the cgroups of k2probe processes that are gone (killed before they could remove their own)."""
    own, _ = _own()
    if own is None:
        return
    with contextlib.suppress(OSError):
        for folder in own.iterdir():
            if folder.name.startswith(PREFIX):
                pid = folder.name[len(PREFIX):].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    remove(folder, wait_s=0.1)
