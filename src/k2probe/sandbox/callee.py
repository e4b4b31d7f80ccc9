"""The candidate's side of a HumanEval check, run inside the candidate's own sandbox as `python -I -S -c SOURCE`
(`server_source()`: this file with sandbox/plaindata.py laid in). It says `ready` before any model code runs, then
executes prompt + completion and serves calls to the entry point: arguments in, the result out, as plain data only.

It judges nothing: the checker outside (sandbox/checker.py) runs the dataset's test and decides. Whatever the model's
code does to this process — patch it, write on its pipe, kill it — it can only answer, or fail to answer, a call."""

import os
import sys

from k2probe.sandbox.plaindata import NotPlainData, from_node, json_line, to_node

_PLAINDATA_IMPORT = "from k2probe.sandbox.plaindata import NotPlainData, from_node, json_line, to_node\n"


def server_source() -> str:
    """This file as one script, with the codec's source in place of its import (the sandbox has no k2probe)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "plaindata.py"), encoding="utf-8") as handle:
        codec = handle.read()
    with open(os.path.abspath(__file__), encoding="utf-8") as handle:
        own = handle.read()
    if _PLAINDATA_IMPORT not in own:
        raise RuntimeError("callee.py: the codec import line changed")
    return own.replace(_PLAINDATA_IMPORT, codec + "\n")


def _described(exc: BaseException) -> dict[str, object]:
    """What the model's code raised, as plain data: `Type: message` and the lines of the model's own program its
    traceback passed through (never this server's frames), whatever the exception's own methods do."""
    try:
        import traceback

        text = "".join(traceback.format_exception_only(exc))[-2000:]
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
                 if frame.filename == "<candidate>" and isinstance(frame.lineno, int)]
        if isinstance(exc, SyntaxError) and exc.filename == "<candidate>" and isinstance(exc.lineno, int):
            lines.append(exc.lineno)
        return {"error": text, "lines": lines[-20:]}
    except BaseException:
        return {"error": type(exc).__name__, "lines": []}


def _traced(function: object, args: object, kwargs: object) -> int | None:
    """Call `function` again with a tracer on its own frame only (no line events): the line it returned from — asked
    for only after the verdict is given, to point at the model's line a wrong value came from (None if it raised)."""
    from types import FrameType
    from typing import Any

    code = getattr(function, "__code__", None)
    seen: list[int] = []

    def local(frame: FrameType, event: str, _arg: Any) -> Any:
        if event == "return" and frame.f_code is code:
            seen.append(frame.f_lineno)
        return local

    def tracer(frame: FrameType, _event: str, _arg: Any) -> Any:
        if frame.f_code is not code:
            return None
        frame.f_trace_lines = False
        return local

    sys.settrace(tracer)
    try:
        function(*args, **kwargs)  # type: ignore[operator,arg-type,misc]
    except BaseException:  # it did not return this time: no line to name
        return None
    finally:
        sys.settrace(None)
    return seen[-1] if seen else None


def _reader(fd: int) -> object:
    """Messages from the checker: a 4-byte length, then marshal bytes (k2probe's own, read with a built-in module)."""
    import marshal

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = os.read(fd, count - len(data))
            if not chunk:
                raise SystemExit(0)  # the checker is done with it
            data += chunk
        return data

    def read() -> dict[str, object]:
        return marshal.loads(exactly(int.from_bytes(exactly(4), "big")))  # type: ignore[no-any-return]

    return read


def serve() -> None:
    """Set up (protocol moved off fds 0 and 1, which now lead nowhere), say ready, load the program, answer calls."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # prints are swallowed, as under the official harness; nothing reaches the checker but replies
        os.dup2(null, fd)
    os.close(null)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    sys.path[:] = [p for p in sys.path if p and os.path.isabs(p)]
    read = _reader(read_fd)

    def send(message: dict[str, object]) -> None:
        data = json_line(message)
        while data:
            data = data[os.write(write_fd, data):]

    send({"op": "ready"})
    program = read()  # type: ignore[operator]
    sys.path.extend(str(p) for p in program["path"] if p not in sys.path)  # site-packages, as the interpreter has
    namespace: dict[str, object] = {"__name__": "__candidate__"}
    try:
        exec(compile(str(program["source"]), "<candidate>", "exec"), namespace)
        function = namespace[str(program["entry"])]
    except BaseException as exc:
        send({"op": "raised", **_described(exc)})
        return
    send({"op": "loaded"})
    while True:
        call = read()  # type: ignore[operator]
        args, kwargs = from_node(call["args"]), from_node(call["kwargs"])
        if call.get("op") == "trace":  # the verdict is given: which of its lines did the answer come from
            send({"op": "traced", "line": _traced(function, args, kwargs)})
            continue
        try:
            result = function(*args, **kwargs)  # type: ignore[operator,arg-type,misc]
        except BaseException as exc:
            send({"op": "raised", **_described(exc)})
            continue
        try:
            send({"op": "returned", "value": to_node(result)})
        except NotPlainData as exc:
            send({"op": "refused", "error": f"returned {exc}"})


if __name__ == "__main__":
    serve()
