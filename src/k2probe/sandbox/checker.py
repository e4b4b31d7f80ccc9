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
TRACE_S = 1.0  # for a failed candidate to say which of its lines its wrong answer came from (after the verdict)


class CandidateBroke(BaseException):
    """The candidate cannot answer any more (died, went silent, broke the protocol, answered with non-plain data)."""


class CandidateRaised(Exception):
    """The candidate's function raised; the message is its own text (its last line; `output` all of it), `lines` the
    lines of its program the traceback passed through (plain ints it sent, checked against the source here)."""

    def __init__(self, output: str, lines: list[int]) -> None:
        super().__init__(_last_line(output))
        self.output = output
        self.lines = lines


def _lines(reply: dict[str, object]) -> list[int]:
    """The line numbers a reply names, plain ints only (anything else in the list is dropped)."""
    found = reply.get("lines")
    return [n for n in found if type(n) is int][-20:] if isinstance(found, list) else []


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
        self.last: tuple[tuple[Any, ...], dict[str, Any]] | None = None  # the last call's arguments
        self.answered: str | None = None  # what it answered, in words ("returned None", "raised ValueError: …")

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
        self.last, self.answered = (args, kwargs), None
        self.send(call)
        reply = self.answer()
        op = reply.get("op")
        if op == "returned":
            try:
                value = from_node(reply.get("value"))
            except NotPlainData as exc:
                raise self._break(f"the candidate answered with something that is not plain data: {exc}") from None
            self.answered = f"returned {_shown(value)}"
            return value
        if op == "raised":
            raised = CandidateRaised(str(reply.get("error")), _lines(reply))
            self.answered = f"raised {raised}"
            raise raised
        if op == "refused":
            raise self._break(f"the function {reply.get('error')}")
        raise self._break(f"the candidate broke the protocol: unexpected {str(op)[:40]!r}")


class HarnessLimit(BaseException):
    """Something k2probe's checker cannot do for this test: the harness's limit, not the model's fault."""


def _shown(value: object, limit: int = 300) -> str:
    """A plain value (built here from plain data) as Python writes it, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _call_text(entry: str, call: tuple[tuple[Any, ...], dict[str, Any]]) -> str:
    args, kwargs = call
    parts = [_shown(a, 120) for a in args] + [f"{k}={_shown(v, 120)}" for k, v in kwargs.items()]
    return f"{entry}({', '.join(parts)})"


def _deepest(exc: BaseException, filename: str) -> int | None:
    """The line of the deepest frame in `filename` (the dataset's `<test>`) that `exc`'s traceback passed through."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


def _model_line(job: dict[str, Any], line: int | None) -> dict[str, Any]:
    """Where a line of the candidate's program (prompt + completion) is: its number in the model's completion and its
    text, read from this checker's own copy of the source (the number is all that came from the candidate)."""
    source = str(job["source"]).splitlines()
    if line is None or not 1 <= line <= len(source):
        return {}
    first = str(job["prompt"]).count("\n")  # the prompt's lines come first
    if line <= first:
        return {"model_line": None, "prompt_line": line, "model_code": source[line - 1][:300]}
    return {"model_line": line - first, "model_code": source[line - 1][:300]}


def _explained(job: dict[str, Any], exc: BaseException, candidate: Candidate) -> tuple[str, str, dict[str, Any]]:
    """A failed check in words, from what this checker saw: the test's line that failed (and the exception), the last
    call and what it answered, and the model's line involved. Returns (reason, proof, details)."""
    said = str(exc) if isinstance(exc, CandidateRaised) else "".join(_exception_only(exc))
    details: dict[str, Any] = {"exception": _last_line(said)}
    test_line = _deepest(exc, "<test>")
    if test_line is not None:
        statement = statement_at(str(job["test"]), test_line)
        if statement:
            details.update(test_line=test_line, assertion=statement[:500])
    if candidate.last is not None:
        details["call"] = _call_text(str(job["entry"]), candidate.last)
        if candidate.answered is not None:
            details["answered"] = candidate.answered[:500]
    if isinstance(exc, CandidateRaised):
        details.update(_model_line(job, exc.lines[-1] if exc.lines else None))
    elif candidate.last is not None and candidate.answered is not None and candidate.answered.startswith("returned"):
        details.update(_model_line(job, _trace(candidate)))
    proof = _proof_text(details)
    what = details.get("assertion")
    reason = f"{details['exception']}: {what}" if what and what not in details["exception"] else details["exception"]
    if isinstance(exc, CandidateRaised):
        reason = f"the function raised {exc}"
    return reason[:300], proof, details


def statement_at(source: str, line: int) -> str:
    """The whole statement of the dataset's test at `line` (an assertion may span lines), or that line alone."""
    import ast

    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    try:
        nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.stmt)
                 and n.lineno <= line <= (n.end_lineno or n.lineno) and not isinstance(n, ast.FunctionDef | ast.For
                                                                                          | ast.While | ast.If | ast.With)]
    except SyntaxError:
        nodes = []
    if nodes:
        inner = min(nodes, key=lambda n: (n.end_lineno or n.lineno) - n.lineno)
        found = ast.get_source_segment(source, inner)
        if found:
            return " ".join(part.strip() for part in found.splitlines())
    return lines[line - 1].strip()


def _exception_only(exc: BaseException) -> list[str]:
    import traceback

    return traceback.format_exception_only(exc)


def _proof_text(details: dict[str, Any]) -> str:
    """The proof a person reads: the failing test line, the call and its answer, the model's line — no frame of
    k2probe's own."""
    lines = []
    if "assertion" in details:
        lines.append(f"test line {details['test_line']}: {details['assertion']}")
    lines.append(str(details["exception"]))
    if "call" in details:
        lines.append(f"the last call: {details['call']} {details.get('answered') or 'did not answer'}")
    if details.get("model_line") is not None:
        lines.append(f"the model's code, line {details['model_line']} of its answer: {details['model_code'].strip()}")
    elif details.get("prompt_line") is not None:
        lines.append(f"the prompt's line {details['prompt_line']}: {details['model_code'].strip()}")
    return "\n".join(lines)


def _trace(candidate: Candidate) -> int | None:
    """Ask the candidate (the verdict already given) which line of its entry point the last call returned from: one
    more call of the same arguments under a tracer, bounded in time; an int is all that is taken from its reply."""
    if candidate.broken is not None or candidate.last is None:
        return None
    args, kwargs = candidate.last
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TRACE_S)
    candidate.deadline = time.monotonic() + TRACE_S
    try:
        candidate.send({"op": "trace", "args": to_node(args), "kwargs": to_node(kwargs)})
        reply = candidate.answer()
        line = reply.get("line") if reply.get("op") == "traced" else None
        return line if type(line) is int else None
    except (TimedOut, CandidateBroke, NotPlainData, OSError):
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


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


def _judge_forked(job: dict[str, Any]) -> dict[str, Any]:
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


def _prepare(job: dict[str, Any]) -> dict[str, Any]:
    """Start the fork server a job describes, before any program needs it."""
    try:
        _fork_server(job["zygote"])
    except Exception as exc:
        _drop_server()
        return {"status": "error", "reason": f"the sandbox did not start: {exc}"[:600], "output": ""}
    return {"status": "ready", "reason": "", "output": ""}


def judge(job: dict[str, Any]) -> dict[str, Any]:
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


def _check(job: dict[str, Any], candidate: Candidate, timeout: float) -> dict[str, Any]:
    """Load the program in the candidate, then run the dataset's test here against it, all within `timeout`."""
    timed_out = {"status": "failed", "reason": f"timed out after {timeout:g} s", "output": ""}
    failure: BaseException | None = None
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, candidate.deadline - time.monotonic()))
    try:
        try:
            candidate.send({"op": "load", "source": job["source"], "entry": job["entry"], "path": job["path"]})
            loaded = candidate.answer()
            if loaded.get("op") == "raised":
                error = str(loaded.get("error"))
                lines = _lines(loaded)
                where = _model_line(job, lines[-1] if lines else None)
                details = {"exception": _last_line(error), **where}
                return {"status": "failed", "reason": f"the program did not load: {_last_line(error)}",
                        "output": "\n".join([error.rstrip(), *_proof_text(details).splitlines()[1:]]),
                        "details": details}
            if loaded.get("op") != "loaded":
                raise candidate._break("the candidate broke the protocol before loading")
            namespace: dict[str, Any] = {"__name__": "__check__"}
            exec(compile(job["prompt"], "<prompt>", "exec"), namespace)
            namespace[job["entry"]] = candidate
            exec(compile(job["test"], "<test>", "exec"), namespace)
            namespace["check"](candidate)
        except TimedOut:
            if candidate.last is not None:  # which call never came back
                timed_out["output"] = f"the last call: {_call_text(str(job['entry']), candidate.last)} did not answer"
            return timed_out
        except CandidateBroke:
            pass
        except HarnessLimit as exc:
            return {"status": "error", "reason": str(exc), "output": ""}
        except BaseException as exc:
            if candidate.broken is None:
                failure = exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TimedOut:  # the alarm rang between the try's end and the timer's reset
        return timed_out
    if failure is not None:  # the verdict is `failed`; now say why, from what this checker saw
        reason, proof, details = _explained(job, failure, candidate)
        return {"status": "failed", "reason": reason, "output": proof, "details": details}
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
