"""Start one sandbox from a plain description (a `Spawn`): per-process limits, the system-call filter handed to bwrap on
a pipe, and a memory cgroup of its own for all its processes together. Used by `isolation.run` and by the checker
workers (sandbox/checker.py), which start each candidate's sandbox themselves.

Standard library only (plus sibling modules that are too): a checker worker imports it."""

from __future__ import annotations

import base64
import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from k2probe.sandbox import cgroup

SECCOMP_FD = "{seccomp-fd}"  # in argv, replaced by the number of the pipe bwrap reads the filter from


@dataclass(frozen=True)
class Spawn:
    """What it takes to start one sandbox."""

    argv: list[str]
    env: dict[str, str]
    cwd: str = "/"
    cpu_s: int = 60
    memory_bytes: int = 2 * 1024**3  # per process (RLIMIT_AS) and, with `memory_cap`, for all of them together
    file_bytes: int = 64 * 1024**2
    processes: int = 128
    seccomp: bytes | None = None
    memory_cap: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seccomp"] = base64.b64encode(self.seccomp).decode("ascii") if self.seccomp is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spawn:
        seccomp = data.get("seccomp")
        return cls(**{**data, "seccomp": base64.b64decode(seccomp) if seccomp is not None else None})


def _preexec(spec: Spawn, group: Path | None) -> Any:
    def apply() -> None:
        if group is not None:
            cgroup.join(group)
        with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")  # the first the kernel kills when memory runs out, never k2probe
        resource.setrlimit(resource.RLIMIT_CPU, (spec.cpu_s, spec.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (spec.memory_bytes, spec.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (spec.file_bytes, spec.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (spec.processes, spec.processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


@contextlib.contextmanager
def started(spec: Spawn, **popen: Any) -> Iterator[tuple[subprocess.Popen[bytes], Path | None]]:
    """The sandbox's outermost process (its own session) and its memory cgroup; on leaving, every process of it is
    killed and the cgroup removed."""
    group = cgroup.create(spec.memory_bytes) if spec.memory_cap else None
    argv, fds = spec.argv, tuple[int, ...]()
    read_fd = -1
    try:
        if spec.seccomp is not None:
            read_fd, write_fd = os.pipe()
            os.write(write_fd, spec.seccomp)  # a few hundred bytes: well within a pipe's buffer
            os.close(write_fd)
            argv, fds = [str(read_fd) if arg == SECCOMP_FD else arg for arg in argv], (read_fd,)
        process = subprocess.Popen(argv, cwd=spec.cwd, env=spec.env, start_new_session=True, pass_fds=fds,
                                   preexec_fn=_preexec(spec, group), **popen)
    except BaseException:
        if group is not None:
            cgroup.remove(group)
        raise
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    try:
        yield process, group
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # bwrap; its pid namespace dies with it (--die-with-parent)
        process.wait()
        if group is not None:
            cgroup.release(group)
