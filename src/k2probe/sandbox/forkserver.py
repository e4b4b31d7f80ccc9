"""The checker's end of a HumanEval fork server (sandbox/zygote.py): one long-lived bubblewrap sandbox per checker
process, in which each program is forked into namespaces, a uid and a folder of its own. Starting a program costs a
few forks instead of an interpreter, bubblewrap and setpriv; the isolation is the same (see zygote.py).

Standard library only (plus sibling modules that are too): a checker worker imports it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from k2probe.sandbox.callee import server_source
from k2probe.sandbox.spawn import Spawn, started

_CALLEE_IMPORT = "from k2probe.sandbox.callee import serve\n"
_MAIN = 'if __name__ == "__main__":\n    serve()\n'
MACHINES = ("x86_64", "aarch64", "riscv64", "ppc64le", "s390x")  # where zygote.py knows clone's number
END_S = 10.0  # for a program's namespace to be gone after `end` (killing thousands of processes takes a while)


class ForkServerBroke(Exception):
    """The fork server did not start, or stopped answering: k2probe's failure, never the model's."""


def zygote_source() -> str:
    """zygote.py as one script, the candidate's server (with its codec) in place of its import."""
    own = Path(__file__).with_name("zygote.py").read_text(encoding="utf-8")
    server = server_source()
    if _CALLEE_IMPORT not in own or _MAIN not in server:
        raise RuntimeError("zygote.py or callee.py: the lines laid together changed")
    return own.replace(_CALLEE_IMPORT, server.replace(_MAIN, "") + "\n")


class ForkServer:
    """A running fork server: `run` starts one program and gives its pipe ends; `end` returns once it is all gone."""

    def __init__(self, spec: Spawn, seccomp: bytes | None, start_s: float) -> None:
        self.spec = spec
        self.uid = 0  # the uid of the last program started
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (as long as the server lives)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        self._stack = contextlib.ExitStack()
        try:
            self.process, _ = self._stack.enter_context(
                started(spec, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=self.errors))
            theirs.close()
            config = {"seccomp": base64.b64encode(seccomp).decode("ascii") if seccomp is not None else None}
            self.control.send(json.dumps(config).encode())
            if self._reply(start_s).get("op") != "ready":
                raise ForkServerBroke("the fork server did not say ready")
        except BaseException:
            theirs.close()
            self.close()
            raise

    def said(self) -> str:
        """The last of what the server and its programs' set-up wrote on stderr (before any model code ran)."""
        self.errors.seek(0)
        return self.errors.read()[-600:].decode("utf-8", "replace").strip()

    def _reply(self, within_s: float) -> dict[str, Any]:
        ready = select.select([self.control], [], [], within_s)[0]
        if not ready:
            raise ForkServerBroke(f"the fork server did not answer within {within_s:g} s")
        data = self.control.recv(1 << 16)
        if not data:
            raise ForkServerBroke(f"the fork server ended: {self.said()}")
        reply: dict[str, Any] = json.loads(data)
        return reply

    def run(self, limits: dict[str, int], env: dict[str, str], start_s: float) -> tuple[int, int]:
        """Fork one program; (the fd to write its requests to, the fd to read its answers from)."""
        to_read, to_write = os.pipe()
        from_read, from_write = os.pipe()
        try:
            socket.send_fds(self.control, [json.dumps({"op": "run", "limits": limits, "env": env}).encode()],
                            [to_read, from_write])
        except BaseException:
            for fd in (to_write, from_read):
                os.close(fd)
            raise
        finally:
            os.close(to_read)
            os.close(from_write)
        try:
            reply = self._reply(start_s)
            if reply.get("op") != "started":
                raise ForkServerBroke("the fork server did not start the program")
            self.uid = int(reply["uid"])
        except BaseException:
            os.close(to_write)
            os.close(from_read)
            raise
        return to_write, from_read

    def end(self) -> None:
        """Kill the program to its last process; back when the kernel has reaped them all."""
        self.control.send(b'{"op":"end"}')
        deadline = time.monotonic() + END_S
        reply = self._reply(max(0.0, deadline - time.monotonic()))
        if reply.get("op") != "clean":
            raise ForkServerBroke(f"the fork server answered {str(reply)[:80]}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Kill the whole sandbox (every program in it with it)."""
        with contextlib.suppress(OSError):
            self.control.close()
        self._stack.close()
        self.errors.close()
