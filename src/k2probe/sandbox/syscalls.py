"""The system calls no sandboxed code may make: reaching into another process (ptrace, process_vm_*, pidfd_getfd), new
namespaces (a user namespace above all: `unshare -Ur`), mounts, kernel keyrings, BPF, perf, io_uring, modules.

Compiled by libseccomp (through pyseccomp, a ctypes binding with libseccomp's own Python API) into the classic BPF
program that bubblewrap loads with `--seccomp FD` just before it runs the command. libseccomp resolves each name for
the machine's architecture and kills a call made through another ABI (x32, i386 on x86_64), which a hand-built filter
would have to get right itself. Where libseccomp is missing, `program()` says so and the sandbox runs without a filter,
recorded as such."""

from __future__ import annotations

import errno
import functools
import tempfile

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog", "vhangup", "lookup_dcookie", "uselib",
    "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
)
CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
TIOCSTI, TIOCLINUX = 0x5412, 0x541C  # typing into the terminal of whoever started k2probe
SUMMARY = "ptrace, process_vm_*, new namespaces (unshare, clone), mount, keyctl, bpf, perf_event_open, io_uring denied"


@functools.cache
def program() -> tuple[bytes | None, str]:
    """The filter as bwrap takes it, and a line saying what it denies — or None and why there is none."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError, RuntimeError) as exc:  # the binding, or libseccomp.so.2 itself, is missing
        return None, f"no system-call filter ({type(exc).__name__}: {exc})"
    try:
        rules = seccomp.SyscallFilter(seccomp.ALLOW)
        deny = seccomp.ERRNO(errno.EPERM)
        for name in DENIED:
            try:
                rules.add_rule(deny, name)
            except (OSError, ValueError, RuntimeError):  # a call this architecture or libseccomp does not know
                continue
        for flag in CLONE_NAMESPACES:
            for name in ("unshare", "clone"):
                rules.add_rule(deny, name, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags sit in memory, out of a filter's sight:
        # ENOSYS makes the C library fall back to clone, whose flags the rules above see
        for request in (TIOCSTI, TIOCLINUX):
            rules.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.EQ, request))
        with tempfile.TemporaryFile() as handle:
            rules.export_bpf(handle)
            handle.seek(0)
            data = handle.read()
    except (OSError, ValueError, RuntimeError) as exc:
        return None, f"no system-call filter (libseccomp refused it: {exc})"
    return data, f"system-call filter: {SUMMARY}"
