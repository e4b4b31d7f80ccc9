"""The fork server that runs HumanEval programs as root (sandbox/zygote.py): each program forked into pid, mount and
IPC namespaces, a uid and a /tmp of its own, with no privileges. What one program leaves — daemons, files, IPC
objects — is gone before the next starts in the same server, and no program can reach the server itself."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from k2probe.sandbox.checker import Candidate, Lines
from k2probe.sandbox.forkserver import ForkServer
from k2probe.sandbox.isolation import isolation, program_env, zygote_spawn
from k2probe.sandbox.programs import Program as Judged
from k2probe.sandbox.programs import verify_programs
from k2probe.sandbox.runtime import Runtime
from k2probe.tasks.humaneval import problems

from .sabotage import ATTACKS, WRONG

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists() or os.geteuid() != 0,
                                reason="the fork server is used as root, with bubblewrap")

LIMITS = {"cpu": 10, "memory": 2 * 1024**3, "file": 16 * 1024**2, "processes": 32, "disk": 64 * 1024**2}


@pytest.fixture
def server():
    found = zygote_spawn(isolation("bwrap"), Runtime.own())
    assert found is not None
    started = ForkServer(found[0], found[1], 20.0)
    yield started
    started.close()


class Program:
    """One program run by the server: loaded from `source`, its function `f` called as the checker calls it."""

    def __init__(self, server: ForkServer, source: str) -> None:
        self.server = server
        self.write_fd, self.read_fd = server.run(LIMITS, program_env(Runtime.own()), 20.0)
        self.uid = server.uid
        self.candidate = Candidate(Lines(self.read_fd), self.write_fd, time.monotonic() + 20.0)
        assert self.candidate.answer() == {"op": "ready"}
        self.candidate.send({"op": "load", "source": source, "entry": "f", "path": []})
        self.loaded = self.candidate.answer()

    def __call__(self, *args: Any) -> object:
        assert self.loaded == {"op": "loaded"}, self.loaded
        return self.candidate(*args)

    def end(self) -> None:
        os.close(self.write_fd)
        os.close(self.read_fd)
        self.server.end()


def _program(task: str, completion: str) -> Judged:
    problem = problems()[task]
    return Judged(problem.prompt, completion, problem.test, problem.entry_point)


def _host_processes_of(uid: int) -> list[int]:
    """Every process on the host whose real uid is `uid` (read from status: a program's /proc entries are root's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            line = next((x for x in status.splitlines() if x.startswith("Uid:")), "Uid: -1")
            if int(line.split()[1]) == uid:
                found.append(int(entry.name))
    return found


DAEMON = """import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            time.sleep(0.01)
    os._exit(0)
time.sleep(0.2)
def f(spin=False):
    while spin:
        pass
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]
"""


def test_a_daemon_left_by_a_program_is_killed_before_the_next_one_starts(server):
    first = Program(server, DAEMON)
    assert len(first()) >= 3  # its init, itself and the daemon: all in its own pid namespace
    assert len(_host_processes_of(first.uid)) >= 2, "the daemon and the program run under the program's uid"
    first.candidate.send({"op": "call", "args": ["T", True], "kwargs": ["D"]})  # never answers: spins, as on a timeout
    begun = time.monotonic()
    first.end()
    assert time.monotonic() - begun < 15  # (a loaded 2-core machine: generous; the check is that it ends at all)
    assert _host_processes_of(first.uid) == []  # all gone once the server says the program ended
    second = Program(server, "import os\ndef f():\n    return sorted(int(p) for p in os.listdir('/proc') "
                             "if p.isdigit()), os.getpid(), os.getuid()\n")
    pids, me, uid = second()
    second.end()
    assert pids == [1, me] and uid == second.uid != first.uid  # a fresh uid; nothing else in sight


STOPPER = """import os, signal, time
if os.fork() == 0:
    os.setsid()
    while True:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(-1, sig)
            except OSError:
                pass
        for pid in range(1, 100000, 1):
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass
def f():
    return 0
"""


def test_a_program_that_stops_everything_it_can_reaches_nothing_outside_its_namespace(server):
    hostile = Program(server, STOPPER)
    time.sleep(0.3)  # its daemon signals every pid it can name, meanwhile
    assert server.alive()
    hostile.end()
    honest = Program(server, "import time\ndef f(x):\n    time.sleep(0.2)\n    return x + 1\n")
    assert honest(41) == 42
    honest.end()


PLANTER = """import os
for folder in ("/tmp", os.getcwd(), "/dev/shm", "/"):
    for name in ("typing.py", "math.py", "sitecustomize.py", "marker"):
        try:
            with open(os.path.join(folder, name), "w") as handle:
                handle.write("import os\\nos._exit(0)\\n")
        except OSError:
            pass
import ctypes
libc = ctypes.CDLL(None)
segment = libc.shmget(0x4B32, 4096, 0o1666)  # IPC_CREAT | 0666: a System V segment, left behind
def f():
    return sorted(os.listdir("/tmp")), segment
"""


def test_files_and_ipc_objects_of_a_program_are_gone_for_the_next(server):
    planter = Program(server, PLANTER)
    written, segment = planter()
    assert "marker" in written and segment >= 0  # it could write its own /tmp and make a segment
    planter.end()
    reader = Program(server, "import os, ctypes, sys\ndef f():\n    return (sorted(os.listdir('/tmp')), os.getcwd(), "
                             "ctypes.CDLL(None).shmget(0x4B32, 0, 0), sys.modules['math'].__file__, "
                             "[p for p in ('/dev/shm/marker', '/marker') if os.path.exists(p)])\n")
    listing, cwd, found, math_from, elsewhere = reader()
    reader.end()
    assert listing == [] and cwd == "/tmp"  # a private, empty folder of its own
    assert elsewhere == []  # nowhere else was writable
    assert found == -1  # the segment went with the other program's IPC namespace
    assert not str(math_from).startswith("/tmp")


PROBE = """import ctypes, errno, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def f():
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    attempts = {}
    attempts["ptrace init"] = libc.ptrace(16, 1, 0, 0) == 0  # PTRACE_ATTACH
    try:
        os.kill(1, signal.SIGKILL)
        attempts["kill init"] = True
    except OSError:
        attempts["kill init"] = False
    attempts["unshare"] = libc.unshare(0x10000000) == 0  # CLONE_NEWUSER
    attempts["setuid 0"] = libc.setuid(0) == 0
    attempts["parent seen"] = os.getppid() != 1
    return {k: status[k].strip() for k in ("Uid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                                            "Seccomp")}, attempts
"""


def test_a_program_has_no_privilege_and_cannot_reach_the_server(server):
    probe = Program(server, PROBE)
    status, attempts = probe()
    probe.end()
    assert status["Uid"].split() == [str(probe.uid)] * 4 and probe.uid != 0
    assert all(int(status[k], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")), status
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"  # the filter: no ptrace, no new namespaces
    assert attempts == dict.fromkeys(attempts, False), attempts
    killer = Program(server, "import os, signal\nos.kill(-1, signal.SIGKILL)\ndef f():\n    return 1\n")
    killer.end()
    assert server.alive()
    after = Program(server, "def f():\n    return 2\n")
    assert after() == 2  # the server still serves
    after.end()


def test_the_isolation_record_says_what_each_program_gets():
    line = isolation("bwrap").line()
    assert "HumanEval programs: each forked by a fork server" in line
    assert all(words in line for words in ("pid, mount and IPC namespaces", "fresh uid", "no capabilities",
                                           "killed to its last process before the next"))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_without_the_fork_server_a_sandbox_per_program_holds_too(monkeypatch, attack):
    """K2PROBE_FORK_SERVER=0: the path non-root users take (a bubblewrap sandbox per program), run here as root."""
    monkeypatch.setenv("K2PROBE_FORK_SERVER", "0")
    iso = isolation("bwrap")
    assert "HumanEval programs: a sandbox of its own each" in iso.line()
    tasks = list(problems())
    programs = {"hostile": _program(tasks[0], ATTACKS[attack]),
                **{f"correct {t}": _program(t, problems()[t].canonical_solution) for t in tasks[1:4]},
                **{f"wrong {t}": _program(t, WRONG) for t in tasks[4:6]}}
    verdicts = verify_programs(programs, iso=iso)
    assert {k: v.status for k, v in verdicts.items()} == {
        k: "passed" if k.startswith("correct") else "failed" for k in programs}, verdicts
