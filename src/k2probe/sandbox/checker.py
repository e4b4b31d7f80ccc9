"""The judge of a HumanEval program, in a k2probe process the candidate never shares: it starts the candidate's own
sandbox or has its fork server fork the candidate (sandbox/forkserver.py; sandbox/callee.py inside either), runs the
dataset's prompt (its helper functions) and test here, and calls `check(proxy)`, each call of the proxy forwarded to
the candidate and its result taken back as plain data.

The verdict is this process's own: `passed` only if check() returned and every answer was plain data; `failed` when
the candidate raised, answered with something else, died, went silent or ran over the time; `error` only when the
sandbox did not start or its server never said `ready` (before any model code ran).

Run as `python -I -m k2probe.sandbox.checker`, a long-lived worker: one job per line on stdin, one verdict per line on
stdout (sandbox/programs.py keeps a pool of them)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import sys
import tempfile
import time
from typing import Any

from k2probe.sandbox.forkserver import ForkServer, ForkServerBroke
from k2probe.sandbox.plaindata import MAX_BYTES, NotPlainData, frame, from_node, read_message, to_node
from k2probe.sandbox.spawn import Spawn, started

START_S = 20.0  # for the sandbox to start and its server to say ready (a loaded machine can be slow)


class CandidateBroke(BaseException):
    """The candidate cannot answer any more (died, went silent, broke the protocol, answered with non-plain data)."""


class CandidateRaised(Exception):
    """The candidate's function raised; the message is its own text (its last line; `output` the traceback)."""

    def __init__(self, output: str) -> None:
        super().__init__(_last_line(output))
        self.output = output


class TimedOut(BaseException):
    pass


class Lines:
    """Lines from the candidate's pipe, each read by a deadline; a line longer than a message may be is refused."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def read(self, deadline: float) -> bytes | None:
        """One line (without its newline); None at the end of the stream; TimedOut past the deadline."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_BYTES:
                raise NotPlainData(f"a message of more than {MAX_BYTES} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimedOut
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                raise TimedOut
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


class Candidate:
    """The entry point, as the test sees it: each call goes to the candidate's process and back as plain data."""

    def __init__(self, lines: Lines, write_fd: int, deadline: float) -> None:
        self.lines, self.write_fd, self.deadline = lines, write_fd, deadline
        self.broken: str | None = None

    def _break(self, reason: str) -> CandidateBroke:
        self.broken = self.broken or reason
        return CandidateBroke(self.broken)

    def send(self, message: dict[str, object]) -> None:
        data = frame(message)
        try:
            while data:
                data = data[os.write(self.write_fd, data):]
        except OSError:  # BrokenPipeError: it is gone
            raise self._break("the candidate's process ended") from None

    def answer(self) -> dict[str, object]:
        try:
            line = self.lines.read(self.deadline)
        except NotPlainData as exc:
            raise self._break(f"the candidate broke the protocol: {exc}") from None
        if line is None:
            raise self._break("the candidate's process ended")
        try:
            return read_message(line)
        except NotPlainData as exc:
            raise self._break(f"the candidate broke the protocol: {exc}") from None

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        if self.broken:
            raise CandidateBroke(self.broken)
        try:
            call = {"op": "call", "args": to_node(args), "kwargs": to_node(kwargs)}
        except NotPlainData as exc:  # the dataset's own argument: k2probe cannot pass it (never seen in HumanEval)
            raise HarnessLimit(f"the test passes an argument that is not plain data: {exc}") from None
        self.send(call)
        reply = self.answer()
        op = reply.get("op")
        if op == "returned":
            try:
                return from_node(reply.get("value"))
            except NotPlainData as exc:
                raise self._break(f"the candidate answered with something that is not plain data: {exc}") from None
        if op == "raised":
            raise CandidateRaised(str(reply.get("error")))
        if op == "refused":
            raise self._break(f"the function {reply.get('error')}")
        raise self._break(f"the candidate broke the protocol: unexpected {str(op)[:40]!r}")


class HarnessLimit(BaseException):
    """Something k2probe's checker cannot do for this test: the harness's limit, not the model's fault."""


def _last_line(text: str) -> str:
    return next((line for line in reversed(text.strip().splitlines()) if line.strip()), "raised")[:300]


def _alarm(_signum: int, _frame: object) -> None:
    raise TimedOut


_SERVER: ForkServer | None = None  # this checker's fork server (sandbox/zygote.py), started on the first job
_SERVER_JOB: dict[str, Any] | None = None  # the description it was started from
_ENDING: ForkServer | None = None  # a program to end (to its last process) before the next job is read
_REPLIES = -1  # where verdicts go; `running` is said there too, the moment the model's code is about to run
RUNNING = b'{"op": "running"}\n'


def _running() -> None:
    """Tell k2probe the model's code runs from now on: a time-out past here is the model's, before it k2probe's."""
    if _REPLIES >= 0:
        with contextlib.suppress(OSError):
            os.write(_REPLIES, RUNNING)


def _fork_server(described: dict[str, Any]) -> ForkServer:
    """The fork server `described` (in full, or by its key once sent), started or restarted as needed."""
    global _SERVER, _SERVER_JOB
    if "spawn" not in described:  # named by its key only: the one this checker was sent before
        if _SERVER_JOB is None or _SERVER_JOB["key"] != described["key"]:
            raise ForkServerBroke("a fork server this checker was never described")
        described = _SERVER_JOB
    if _SERVER is not None and (described != _SERVER_JOB or not _SERVER.alive()):
        _drop_server()
    if _SERVER is None:
        seccomp = described.get("seccomp")
        _SERVER = ForkServer(Spawn.from_json(described["spawn"]),
                             base64.b64decode(seccomp) if seccomp is not None else None, START_S)
        _SERVER_JOB = described
    return _SERVER


def _drop_server() -> None:
    """Kill the fork server's sandbox; the next job starts another from the description kept."""
    global _SERVER
    if _SERVER is not None:
        _SERVER.close()
    _SERVER = None


def end_program() -> None:
    """End the last program forked (every process of it gone) or, if its fork server cannot say so, kill that
    server's whole sandbox: nothing of one program is left when the next starts."""
    global _ENDING
    server, _ENDING = _ENDING, None
    if server is None:
        return
    try:
        server.end()
    except (ForkServerBroke, OSError, ValueError):
        if server is _SERVER:
            _drop_server()
        else:
            server.close()


def _judge_forked(job: dict[str, Any]) -> dict[str, str]:
    """One program forked by this checker's fork server into namespaces and a uid of its own."""
    global _ENDING
    try:
        server = _fork_server(job["zygote"])
        write_fd, read_fd = server.run(job["limits"], job["env"], START_S)
    except Exception as exc:  # bubblewrap or the server did not start: before any model code ran
        said = _SERVER.said() if _SERVER is not None else ""
        _drop_server()
        return {"status": "error", "reason": f"the sandbox did not start: {exc}"[:600], "output": said}
    _ENDING = server
    try:
        candidate = Candidate(Lines(read_fd), write_fd, time.monotonic() + START_S)
        try:
            hello = candidate.answer()
        except (CandidateBroke, TimedOut):
            hello = {}
        if hello.get("op") != "ready":  # nothing of the model's has run yet: the program's set-up failed
            said = server.said()
            return {"status": "error", "reason": f"the sandbox did not start: {said}"[:600], "output": said}
        _running()
        candidate.deadline = time.monotonic() + float(job["timeout"])
        return _check(job, candidate, float(job["timeout"]))
    finally:
        os.close(write_fd)
        os.close(read_fd)


def _prepare(job: dict[str, Any]) -> dict[str, str]:
    """Start the fork server a job describes, before any program needs it."""
    try:
        _fork_server(job["zygote"])
    except Exception as exc:
        _drop_server()
        return {"status": "error", "reason": f"the sandbox did not start: {exc}"[:600], "output": ""}
    return {"status": "ready", "reason": "", "output": ""}


def judge(job: dict[str, Any]) -> dict[str, str]:
    """One program's verdict: {"status", "reason", "output"}."""
    if job.get("zygote") is not None:
        return _judge_forked(job)
    spec = Spawn.from_json(job["spawn"])
    timeout = float(job["timeout"])
    with tempfile.TemporaryFile() as errors, started(spec, stdin=-1, stdout=-1, stderr=errors) as (process, _group):
        assert process.stdin is not None and process.stdout is not None
        lines, write_fd = Lines(process.stdout.fileno()), process.stdin.fileno()
        candidate = Candidate(lines, write_fd, time.monotonic() + START_S)
        try:
            hello = candidate.answer()
        except (CandidateBroke, TimedOut):
            hello = {}
        if hello.get("op") != "ready":  # nothing of the model's has run yet: the sandbox itself failed
            process.kill()
            process.wait()
            errors.seek(0)
            said = errors.read()[-600:].decode("utf-8", "replace").strip()
            return {"status": "error", "reason": f"the sandbox did not start (exit {process.returncode}): {said}",
                    "output": said}
        _running()
        candidate.deadline = time.monotonic() + timeout
        return _check(job, candidate, timeout)
    raise AssertionError("unreachable")  # pragma: no cover


def _check(job: dict[str, Any], candidate: Candidate, timeout: float) -> dict[str, str]:
    """Load the program in the candidate, then run the dataset's test here against it, all within `timeout`."""
    timed_out = {"status": "failed", "reason": f"timed out after {timeout:g} s", "output": ""}
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, candidate.deadline - time.monotonic()))
    try:
        try:
            candidate.send({"op": "load", "source": job["source"], "entry": job["entry"], "path": job["path"]})
            loaded = candidate.answer()
            if loaded.get("op") == "raised":
                error = str(loaded.get("error"))
                return {"status": "failed", "reason": f"the program did not load: {_last_line(error)}",
                        "output": error}
            if loaded.get("op") != "loaded":
                raise candidate._break("the candidate broke the protocol before loading")
            namespace: dict[str, Any] = {"__name__": "__check__"}
            exec(compile(job["prompt"], "<prompt>", "exec"), namespace)
            namespace[job["entry"]] = candidate
            exec(compile(job["test"], "<test>", "exec"), namespace)
            namespace["check"](candidate)
        except TimedOut:
            return timed_out
        except CandidateBroke:
            pass
        except HarnessLimit as exc:
            return {"status": "error", "reason": str(exc), "output": ""}
        except BaseException as exc:
            import traceback

            if candidate.broken is None and isinstance(exc, CandidateRaised):
                return {"status": "failed", "reason": f"the function raised {exc}", "output": exc.output}
            output = "".join(traceback.format_exception(exc))[-2000:]
            if candidate.broken is None:
                return {"status": "failed", "reason": _last_line(output), "output": output}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TimedOut:  # the alarm rang between the try's end and the timer's reset
        return timed_out
    if candidate.broken is not None:
        return {"status": "failed", "reason": candidate.broken[:300], "output": ""}
    return {"status": "passed", "reason": "check() passed", "output": ""}


def main() -> None:
    """Serve jobs until stdin ends. Only verdicts (and `running`) reach stdout; whatever a test prints goes nowhere."""
    global _REPLIES
    jobs = os.fdopen(os.dup(0), "rb")
    verdicts = _REPLIES = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    for line in jobs:
        job = json.loads(line)
        try:
            verdict = judge(job) if job.get("op") != "prepare" else _prepare(job)
        except TimedOut:
            verdict = {"status": "failed", "reason": f"timed out after {job['timeout']} s", "output": ""}
        except Exception as exc:
            verdict = {"status": "error", "reason": f"the checker failed: {type(exc).__name__}: {exc}", "output": ""}
        with contextlib.suppress(OSError):
            os.write(verdicts, json.dumps({"key": job["key"], **verdict}).encode() + b"\n")
        end_program()  # after the verdict is out, before the next job is read


if __name__ == "__main__":
    main()
