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
PRELOAD = ("k2probe.cli.main", "k2probe.session", "k2probe.client.transport", "k2probe.diagnose.chat",
           "k2probe.recording.store", "k2probe.api", "rich.console", "rich.table")
# never imported before the fork: modules that read the environment or the terminal when imported (the consoles of
# report.terminal take COLUMNS, NO_COLOR, FORCE_COLOR, TERM then; typer.rich_utils FORCE_COLOR, TERMINAL_WIDTH), so
# each child imports them under its own
NOT_PRELOADED = ("k2probe.report.terminal", "typer.rich_utils")
# variables read once when an interpreter starts: a call that sets them differently needs an interpreter of its own
STARTUP_VARS = ("PYTHON", "LC_", "LANG", "TZ")


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_VARS)}


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack(">I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame], fds)
        sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and any file descriptors sent with it; (None, []) once the other side has closed."""
    data, fds, _, _ = socket.recv_fds(sock, 65536, max_fds) if max_fds else (sock.recv(65536), [], 0, None)
    while 0 < len(data) < 4:
        data += sock.recv(4 - len(data))
    if not data:
        return None, list(fds)
    size = struct.unpack(">I", data[:4])[0]
    body = data[4:]
    while len(body) < size:
        more = sock.recv(size - len(body))
        if not more:
            return None, list(fds)
        body += more
    return json.loads(body), list(fds)


class Zygote:
    """The test side: start the zygote once, then `run` calls through it (or the ordinary way when it cannot)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.startup: dict[str, str] = {}

    def _start(self) -> socket.socket:
        if self.sock is None:
            ours, theirs = socket.socketpair()
            self.startup = _startup_env(dict(os.environ))
            self.process = subprocess.Popen([sys.executable, __file__, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, cwd="/")
            theirs.close()
            ready, _ = _receive(ours)
            assert ready == {"ready": True}, ready
            self.sock = ours
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None:
            self.process.wait(timeout=30)
            self.process = None

    def exec_needed(self, env: dict[str, str], cwd: Path) -> bool:
        if os.environ.get("K2PROBE_TEST_EXEC") == "1":
            return True
        if self.sock is not None and _startup_env(env) != self.startup:
            return True
        if self.sock is None and _startup_env(env) != _startup_env(dict(os.environ)):
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
        finally:
            self.lock.release()

    def _forked(self, args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str, str]:
        sock = self._start()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            _send(sock, {"args": args, "env": env, "cwd": str(cwd)}, [0, out_w, err_w])
        finally:
            os.close(out_w)
            os.close(err_w)
        started, _ = _receive(sock)
        assert started is not None and "pid" in started, "the CLI zygote died"
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
        deadline = time.monotonic() + timeout
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
        if timed_out:
            os.kill(started["pid"], signal.SIGKILL)
        os.close(out_r)
        os.close(err_r)
        ended, _ = _receive(sock)
        assert ended is not None and "code" in ended, "the CLI zygote died"
        encoding = locale.getpreferredencoding(False)
        out, err = (b"".join(chunks[fd]).decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
                    for fd in (out_r, err_r))
        if timed_out:
            raise subprocess.TimeoutExpired([sys.executable, "-m", "k2probe", *args], timeout, out, err)
        return ended["code"], out, err


def _serve(sock: socket.socket) -> dict[str, Any] | None:
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
    _send(sock, {"ready": True})
    while True:
        request, fds = _receive(sock, max_fds=3)
        if request is None:
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as subprocess's close_fds: only 0, 1 and 2 are inherited
            return request
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send(sock, {"code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.path.pop(0)  # this script's folder (tests/): a child must import what `python -m k2probe` would, nothing more
    call = _serve(socket.socket(fileno=int(sys.argv[1])))
    if call is not None:  # the forked child: become `python -m k2probe ARGS` in the call's folder and environment
        import runpy

        os.chdir(call["cwd"])
        os.environ.clear()
        os.environ.update(call["env"])
        sys.path.insert(0, call["cwd"])
        sys.argv = ["-m", *call["args"]]
        runpy.run_module("k2probe", run_name="__main__", alter_sys=True)
