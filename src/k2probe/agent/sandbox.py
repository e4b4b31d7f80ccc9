"""Run code the model wrote: own process group, CPU/memory/file/process limits, a read-only world outside the
workspace (bubblewrap), no network, no secrets in the environment, output captured and truncated."""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NOBODY = 65534
SAFE_ENV = ("LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    wall_s: float = 120.0
    cpu_s: int = 60
    memory_bytes: int = 2 * 1024**3
    file_bytes: int = 64 * 1024**2
    processes: int = 128
    output_bytes: int = 16 * 1024


@dataclass
class Isolation:
    """How much isolation this machine gave; said in every record, never assumed."""

    filesystem: str
    network: str
    user: str
    notes: list[str] = field(default_factory=list)


@dataclass
class SandboxResult:
    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool = False
    killed: str | None = None  # why the sandbox ended it: wall time, CPU time, memory, file size
    output_bytes: int = 0
    truncated: bool = False
    isolation: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def summary(self) -> str:
        state = "timed out" if self.timed_out else f"exit {self.exit_code}"
        if self.killed:
            state += f" ({self.killed})"
        return state


@functools.lru_cache(maxsize=1)
def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                            "--unshare-pid", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


@functools.lru_cache(maxsize=1)
def _unshare_net_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0


def isolation() -> Isolation:
    root = os.geteuid() == 0
    user = "nobody (uid 65534)" if root and shutil.which("setpriv") else "the calling user"
    if _bwrap_works():
        return Isolation("read-only outside the workspace; private /tmp (bubblewrap)",
                         "cut: empty network namespace (bubblewrap)", user)
    notes = ["bubblewrap unavailable: the filesystem outside the workspace is NOT protected (apt-get install bubblewrap)"]
    network = "cut: empty network namespace (unshare)" if _unshare_net_works() else "NOT cut: no network namespace"
    return Isolation("not isolated", network, user, notes)


def _scrubbed_env(workspace: Path) -> dict[str, str]:
    """A fresh environment: nothing from the caller's but PATH and locale, so no key can be read."""
    python_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join([python_bin, "/usr/local/bin", "/usr/bin", "/bin"])
    env = {"PATH": path, "HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
           "PYTHONUNBUFFERED": "1", "K2PROBE_SANDBOX": "1"}
    env.update({k: os.environ[k] for k in SAFE_ENV if k in os.environ})
    env.setdefault("LANG", "C.UTF-8")
    return env


def _own_processes() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _preexec(limits: Limits, drop_to_nobody: bool) -> Any:
    processes = limits.processes if drop_to_nobody else _own_processes() + limits.processes

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def prepare_workspace(workspace: Path) -> None:
    """Let the sandbox user write the workspace (and only it)."""
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(workspace):
        os.chown(root, NOBODY, NOBODY)
        for name in dirs + files:
            os.chown(os.path.join(root, name), NOBODY, NOBODY, follow_symlinks=False)


def _python_paths() -> list[str]:
    """The interpreter's installation, which the sandbox user must be able to run even when it lives under a
    private home directory (pyenv under /root)."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return sorted(paths)


def _parents(path: str, under: str) -> list[str]:
    """bwrap arguments creating `path`'s missing parents below `under` as 0755 (bwrap's default is 0700, which
    would lock the sandbox user out of its own workspace)."""
    parents = [str(a) for a in reversed(Path(path).parents) if str(a).startswith(under)]
    return [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]


def _wrap(command: str, workspace: Path, iso: Isolation) -> list[str]:
    inner = ["sh", "-c", command]
    if "nobody" in iso.user:
        inner = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *inner]
    ws = str(workspace)
    if "bubblewrap" in iso.filesystem:
        hide_home = ["--tmpfs", "/root"]
        for path in (p for p in _python_paths() if p.startswith("/root/")):
            hide_home += [*_parents(path, "/root/"), "--ro-bind", path, path]
        return ["bwrap", "--ro-bind", "/", "/", *hide_home, "--tmpfs", "/tmp", *_parents(ws, "/tmp/"),
                "--bind", ws, ws, "--dev", "/dev",
                "--proc", "/proc", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
                "--new-session", "--chdir", ws, *inner]
    if iso.network.startswith("cut"):
        return ["unshare", "--net", "--", *inner]
    return inner


def _why_killed(code: int | None, timed_out: bool) -> str | None:
    if timed_out:
        return "wall-clock limit"
    if code is None or code >= 0:
        return {128 + signal.SIGXCPU: "CPU-time limit", 128 + signal.SIGXFSZ: "file-size limit",
                128 + signal.SIGKILL: "killed"}.get(code or 0)
    return {-signal.SIGXCPU: "CPU-time limit", -signal.SIGXFSZ: "file-size limit", -signal.SIGKILL: "killed",
            -signal.SIGSEGV: "crashed (memory?)"}.get(code, f"signal {-code}")


def _read_capped(path: Path, limit: int) -> tuple[str, int]:
    """At most `limit` bytes: the head and the tail (where test summaries and tracebacks end), with the gap noted."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= limit:
            return handle.read().decode("utf-8", "replace"), size
        head = handle.read(limit // 4)
        handle.seek(size - (limit - limit // 4))
        tail = handle.read()
    gap = size - len(head) - len(tail)
    return (head.decode("utf-8", "replace") + f"\n… [{gap} bytes not shown] …\n"
            + tail.decode("utf-8", "replace")), size


def run(command: str, workspace: Path, limits: Limits | None = None) -> SandboxResult:
    """Run `command` (a shell line) in the workspace under the limits; never raises for what the command does."""
    limits = limits or Limits()
    iso = isolation()
    wrapped = _wrap(command, workspace, iso)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="k2probe-out-") as out_dir:
        out_path, err_path = Path(out_dir) / "stdout", Path(out_dir) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(wrapped, cwd=workspace, env=_scrubbed_env(workspace), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=err, start_new_session=True,
                                       preexec_fn=_preexec(limits, "nobody" in iso.user))
            timed_out = False
            try:
                code: int | None = process.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            else:
                with contextlib.suppress(ProcessLookupError):  # whatever it left behind in its session goes too
                    os.killpg(process.pid, signal.SIGKILL)
        stdout, out_size = _read_capped(out_path, limits.output_bytes)
        stderr, err_size = _read_capped(err_path, limits.output_bytes)
    duration = (time.perf_counter() - started) * 1000.0
    return SandboxResult(command, None if timed_out else code, stdout, stderr, duration, timed_out,
                         _why_killed(code, timed_out), out_size + err_size,
                         max(out_size, err_size) > limits.output_bytes, asdict(iso))
