"""`python -m k2probe` without paying interpreter start and imports on every call: a zygote process imports k2probe
once, then forks one child per call; the child is a real process of its own (its own exit, atexit, signals, file
descriptors 0-2 as a subprocess would have them, environment and working directory of the call) that runs
`python -m k2probe ARGS` from its __main__ on. This saves about 1 s of a loaded 2-core machine per CLI call.

What a fork cannot give is said by `exec_needed`: a call that changes how the interpreter starts (PYTHON*, locale,
TZ) or runs in a folder whose Python files `-m` would import first is started the ordinary way. So are calls made while
the zygote is busy (a test running two CLIs at once) and, with K2PROBE_TEST_EXEC=1, every call."""

from __future__ import annotations

import gc
import json
import locale
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# imported by the zygote before it forks: what `k2probe` commands import lazily, so no child imports them again
PRELOAD = ("k2probe.cli.main", "k2probe.contexts", "k2probe.client.transport", "k2probe.diagnose.chat",
           "k2probe.recording.store", "k2probe.api", "rich.console", "rich.table")
# never imported before the fork: modules that read the environment or the terminal when imported (the consoles of
# report.terminal take COLUMNS, NO_COLOR, FORCE_COLOR, TERM then; typer.rich_utils FORCE_COLOR, TERMINAL_WIDTH), so
# each child imports them under its own
NOT_PRELOADED = ("k2probe.report.terminal", "typer.rich_utils")
# variables read once when an interpreter starts: a call that sets them differently needs an interpreter of its own
STARTUP_VARS = ("PYTHON", "LC_", "LANG", "TZ")


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_VARS)}


class Channel:
    """Length-prefixed JSON messages over a Unix socket, file descriptors riding with a message's first bytes;
    buffered, since two messages sent close together may arrive in one read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        frame = struct.pack(">I", len(data)) + data
        sent = socket.send_fds(self.sock, [frame], fds) if fds else 0
        self.sock.sendall(frame[sent:])

    def receive(self, max_fds: int = 0, timeout: float | None = None) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message and any descriptors that came with it; (None, []) once the other side has closed.
        socket.timeout (TimeoutError) when nothing complete came within `timeout` seconds."""
        fds: list[int] = []
        self.sock.settimeout(timeout)
        while len(self.buffer) < 4 or len(self.buffer) < 4 + struct.unpack(">I", self.buffer[:4])[0]:
            if max_fds and not fds:
                data, got, _, _ = socket.recv_fds(self.sock, 65536, max_fds)
                fds.extend(got)
            else:
                data = self.sock.recv(65536)
            if not data:
                return None, fds
            self.buffer += data
        size = struct.unpack(">I", self.buffer[:4])[0]
        body, self.buffer = self.buffer[4:4 + size], self.buffer[4 + size:]
        return json.loads(body), fds

    def close(self) -> None:
        self.sock.close()


class Zygote:
    """The test side: start the zygote once, then `run` calls through it (or the ordinary way when it cannot)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.startup: dict[str, str] = {}

    def _start(self) -> Channel:
        if self.channel is None:
            ours, theirs = socket.socketpair()
            self.startup = _startup_env(dict(os.environ))
            self.process = subprocess.Popen([sys.executable, __file__, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, cwd="/")
            theirs.close()
            channel = Channel(ours)
            ready, _ = channel.receive(timeout=120)
            if ready != {"ready": True}:
                channel.close()
                raise RuntimeError(f"the CLI zygote did not start (exit {self.process.wait(timeout=30)})")
            self.channel = channel
        return self.channel

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # still waiting on a child of its own
                self.process.kill()
                self.process.wait()
            self.process = None

    def exec_needed(self, env: dict[str, str], cwd: Path) -> bool:
        if os.environ.get("K2PROBE_TEST_EXEC") == "1":
            return True
        started_under = self.startup if self.channel is not None else _startup_env(dict(os.environ))
        if _startup_env(env) != started_under:
            return True
        # `python -m` puts the working directory first on sys.path: its modules would shadow what the zygote imported
        return any(p.suffix in (".py", ".pyc", ".so") or (p / "__init__.py").exists() for p in cwd.iterdir())

    def run(self, args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str, str]:
        """`python -m k2probe ARGS` in `cwd` with exactly `env`: (exit code, stdout, stderr) as subprocess.run(...,
        capture_output=True, text=True, timeout=timeout) gives them, TimeoutExpired included."""
        if self.exec_needed(env, cwd) or not self.lock.acquire(blocking=False):
            done = subprocess.run([sys.executable, "-m", "k2probe", *args], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout)
            return done.returncode, done.stdout, done.stderr
        try:
            return self._forked(args, env, cwd, timeout)
        except subprocess.TimeoutExpired:  # the call's own outcome: the zygote is in step
            raise
        except BaseException:  # the zygote is gone, or out of step (an interrupt mid-call): the next call starts anew
            self.close()
            raise
        finally:
            self.lock.release()

    def _forked(self, args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str, str]:
        channel = self._start()
        deadline = time.monotonic() + timeout
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdin = 0 if _is_open(0) else os.open(os.devnull, os.O_RDONLY)  # what a subprocess would inherit
        try:
            channel.send({"args": args, "env": env, "cwd": str(cwd)}, [stdin, out_w, err_w])
        finally:
            for fd in (out_w, err_w, *([stdin] if stdin else [])):
                os.close(fd)
        started, _ = channel.receive(timeout=60)
        if started is None or "pid" not in started:
            raise RuntimeError("the CLI zygote did not fork")
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
        with selectors.DefaultSelector() as selector:
            for fd in chunks:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
            timed_out = bool(selector.get_map())
        os.close(out_r)
        os.close(err_r)
        ended: dict[str, Any] | None = None
        if not timed_out:
            try:
                ended, _ = channel.receive(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:  # its output closed, the process still running
                timed_out = True
        if timed_out:
            os.kill(started["pid"], signal.SIGKILL)
            ended, _ = channel.receive(timeout=60)
        if ended is None or "code" not in ended:
            raise RuntimeError("the CLI zygote did not report an exit code")
        encoding = locale.getpreferredencoding(False)
        out, err = (b"".join(chunks[fd]).decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
                    for fd in (out_r, err_r))
        if timed_out:
            raise subprocess.TimeoutExpired([sys.executable, "-m", "k2probe", *args], timeout, out, err)
        return int(ended["code"]), out, err


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _serve(channel: Channel) -> dict[str, Any] | None:
    """The zygote's loop: fork a child per request and report its pid, then its exit code. Returns the request in
    the child; returns None in the zygote when the test process has gone."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the zygote ends with the test process
    for name in PRELOAD:
        __import__(name)
    early = [name for name in NOT_PRELOADED if name in sys.modules]
    assert not early, f"imported before the fork, so a child would not read its own environment: {early}"
    gc.collect()
    gc.freeze()  # what is imported lives as long as a child does: its exit need not walk (and copy) all of it
    channel.send({"ready": True})
    while True:
        request, fds = channel.receive(max_fds=3)
        if request is None:
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            channel.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as subprocess's close_fds: only 0, 1 and 2 are inherited
            return request
        for fd in fds:
            os.close(fd)
        channel.send({"pid": pid})
        _, status = os.waitpid(pid, 0)
        channel.send({"code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.path.pop(0)  # this script's folder (tests/): a child must import what `python -m k2probe` would, nothing more
    call = _serve(Channel(socket.socket(fileno=int(sys.argv[1]))))
    if call is not None:  # the forked child: become `python -m k2probe ARGS` in the call's folder and environment
        import runpy

        os.chdir(call["cwd"])
        os.environ.clear()
        os.environ.update(call["env"])
        sys.path.insert(0, call["cwd"])
        sys.argv = ["-m", *call["args"]]
        runpy.run_module("k2probe", run_name="__main__", alter_sys=True)
