"""A fork server for HumanEval candidates, run as root inside one long-lived bubblewrap sandbox per checker process
(`zygote_source()`: this file with the candidate's server, sandbox/callee.py, laid in). The interpreter, the server and
the modules programs use are loaded once; each program is a fork that gets, before any model code runs:

- its own pid namespace (it sees its init and itself; when it ends, the kernel kills every process it left), its own
  mount namespace (a fresh /proc, a private size-capped tmpfs /tmp owned by it, its working folder) and IPC namespace;
- a fresh uid of its own, no groups, no capabilities (bounding, ambient and inheritable sets emptied), no_new_privs,
  the same system-call filter as every sandbox (sandbox/syscalls.py, loaded with prctl), its resource limits.

Nothing of one program outlives it: the next is forked only after the previous one's init was reaped, which the
kernel allows only once every process of its namespace is gone; its tmpfs and IPC objects go with its namespaces.
The server itself is out of every program's sight: another pid namespace, another uid, no descriptor shared.

Protocol, on a SOCK_SEQPACKET socket at fd 0 (sandbox/forkserver.py is the other end): `config` (once) → `ready`;
then per program `run` (with the candidate's two pipe ends attached) → `started`, and `end` → `clean`."""

import ctypes
import json
import os
import random
import resource
import signal
import socket
from typing import Any

from k2probe.sandbox.callee import serve

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID = 0x00020000, 0x08000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 4, 24, 38, 47
PR_SET_SECCOMP, SECCOMP_MODE_FILTER, PR_CAP_AMBIENT_CLEAR_ALL = 22, 2, 4
CAPABILITY_VERSION_3 = 0x20080522
UIDS = (0x60000000, 0x7FFFFFFE)  # uids no account uses (as sandbox/isolation.py's)
PRELOADED = ("typing", "collections", "collections.abc", "math", "re", "itertools", "functools", "heapq", "bisect",
             "string", "hashlib", "copy", "traceback")

SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120, "s390x": 120}
# with a zero stack and no pointers, clone's arguments mean the same on each of these

_LIBC = ctypes.CDLL(None, use_errno=True)
_SYSCALL = ctypes.PyDLL(None, use_errno=True).syscall  # PyDLL: the GIL stays held across the clone
_SYSCALL.restype = ctypes.c_long
_PYAPI = ctypes.pythonapi


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _no_capabilities(last_cap: int) -> None:
    """Empty the bounding and ambient sets (while root may), before the uid change empties the others."""
    for cap in range(last_cap + 1):
        _check(_LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "PR_CAPBSET_DROP")
    _check(_LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "PR_CAP_AMBIENT_CLEAR_ALL")


_CAP_HEADER, _CAP_DATA = ctypes.c_uint32 * 2, ctypes.c_uint32 * 6  # made once: a type made in each fork costs it


def _no_inheritable() -> None:
    _check(_LIBC.capset(_CAP_HEADER(CAPABILITY_VERSION_3, 0), _CAP_DATA()), "capset")


def _candidate(fds: list[int], job: dict[str, Any], uid: int, last_cap: int, fprog: object) -> None:
    """The program's process (pid 2 of its namespace): limits, no privileges, the filter, then the server."""
    os.dup2(fds[0], 0)
    os.dup2(fds[1], 1)
    os.closerange(3, 1 << 20)
    limits = job["limits"]
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory"], limits["memory"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file"], limits["file"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("1000")  # the first the kernel kills when memory runs out
    _no_capabilities(last_cap)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # every uid non-zero: permitted and effective sets are emptied by the kernel
    _no_inheritable()
    _check(_LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    if fprog is not None:
        _check(_LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")  # type: ignore[arg-type]
    os.chdir("/tmp")
    os.environ.clear()
    os.environ.update(job["env"])
    serve()


def _init(fds: list[int], job: dict[str, Any], uid: int, last_cap: int, fprog: object) -> None:
    """pid 1 of the program's namespace: a fresh /proc and a private /tmp, the candidate forked, orphans reaped; when
    the candidate ends, this ends, and the kernel kills whatever else is left in the namespace."""
    _check(_LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    _check(_LIBC.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    options = f"size={int(job['limits']['disk'])},mode=0700,uid={uid},gid={uid}".encode()
    _check(_LIBC.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options), "mount /tmp")
    child = os.fork()
    if child == 0:
        try:
            _candidate(fds, job, uid, last_cap, fprog)
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)
    while True:
        pid, _ = os.waitpid(-1, 0)
        if pid == child:
            os._exit(0)


def _cloned() -> int:
    """fork(), but the child is pid 1 of new pid, mount and IPC namespaces: clone(2) itself, as unshare(2) would put
    only the caller's later children in a new pid namespace and cost one more process per program."""
    _PYAPI.PyOS_BeforeFork()
    pid = _SYSCALL(SYS_CLONE[os.uname().machine], CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        _PYAPI.PyOS_AfterFork_Child()
        return 0
    errno = ctypes.get_errno()
    _PYAPI.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(errno, f"clone: {os.strerror(errno)}")
    return int(pid)


def _start(fds: list[int], job: dict[str, Any], uid: int, last_cap: int, fprog: object, control: socket.socket) -> int:
    """The program's init, in namespaces of its own; its pid."""
    init = _cloned()
    if init == 0:
        try:
            os.close(control.detach())  # the program never holds the server's channel
            _check(_LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
            _init(fds, job, uid, last_cap, fprog)
        except BaseException as exc:
            os.write(2, f"k2probe zygote: {exc}\n".encode())
        finally:
            os._exit(1)
    return init


def main() -> None:
    control = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _check(_LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE")
    config = json.loads(control.recv(1 << 16))
    fprog = None
    if config.get("seccomp"):
        import binascii

        program = binascii.a2b_base64(config["seccomp"])
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = _Fprog(len(program) // 8, ctypes.addressof(buffer))
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last_cap = int(handle.read())
    for name in PRELOADED:
        __import__(name)
    import gc

    gc.freeze()  # what is loaded now is never scanned by a fork's collector: its pages stay shared, not copied
    control.send(b'{"op":"ready"}')
    uid = 0
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1 << 16, 2)
        if not message:
            return
        job = json.loads(message)
        if job.get("op") != "run" or len(fds) != 2:
            raise SystemExit(f"zygote: unexpected message {message[:80]!r}")
        uid = next(u for u in iter(lambda: random.randint(*UIDS), None) if u != uid)  # never the last one's
        init = _start(fds, job, uid, last_cap, fprog, control)
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"op": "started", "uid": uid}).encode())
        message = control.recv(1 << 16)
        os.kill(init, signal.SIGKILL)
        _, status = os.waitpid(init, 0)  # returns once the kernel has reaped every process of its namespace
        if not message:
            return
        control.send(json.dumps({"op": "clean", "status": status}).encode())


if __name__ == "__main__":
    main()
