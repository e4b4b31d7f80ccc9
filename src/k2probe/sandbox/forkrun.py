"""Run many small Python programs fast, inside one sandbox: read them all, then fork one child per program.

Executed as a script *inside* the sandbox (standard library only): `python -S forkrun.py TIMEOUT WORKERS`, with the
programs in ./programs.json (name → source). Prints one JSON line per program: {"name", "status", "detail"}, status one of
passed | failed | timeout | signal. A child reports a pass only by writing to its own pipe after its program
returned; its output goes to its own file, and this process is made non-dumpable so no child can reach into it
through /proc or ptrace. Anything odd (a child killed by a signal it was not sent) is reported as `signal`, and the
caller re-runs that program alone.
"""

import contextlib
import json
import os
import resource
import signal
import sys
import time
import traceback


def _non_dumpable() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def _child(code: object, name: str, out_path: str, write_fd: int, timeout: float) -> None:
    """In the forked child: limits, own output, run the program, say `P` on the pipe only if it returned."""
    try:
        os.setsid()
        cpu = int(timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        for fd in [int(name) for name in os.listdir("/proc/self/fd")]:  # every other pipe end: not this child's
            if fd > 2 and fd != write_fd:
                with contextlib.suppress(OSError):
                    os.close(fd)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        if isinstance(code, BaseException):
            raise code
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # type: ignore[arg-type]
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os.write(write_fd, b"P")
    os._exit(0)


def _tail(path: str, limit: int = 1200) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def main() -> None:
    timeout, workers = float(sys.argv[1]), max(1, int(sys.argv[2]))
    _non_dumpable()
    import site  # started with -S: the site-packages folders, without running their .pth files

    sys.path.extend(p for p in site.getsitepackages() if os.path.isdir(p) and p not in sys.path)
    with open("programs.json", encoding="utf-8") as handle:
        sources: dict[str, str] = json.load(handle)
    names = sorted(sources)
    codes: dict[str, object] = {}  # compiled here once, before any child exists: children inherit the code objects
    for name in names:
        source = sources[name]
        try:
            codes[name] = compile(source, name, "exec")
        except (SyntaxError, ValueError) as exc:  # the child reports it, with its traceback, as the program's failure
            codes[name] = exc
    os.makedirs("out", exist_ok=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])  # children's ends arrive by sigtimedwait, no polling
    pending = list(reversed(names))
    running: dict[int, tuple[str, int, str, float]] = {}
    while pending or running:
        while pending and len(running) < workers:
            name = pending.pop()
            read_fd, write_fd = os.pipe()
            out_path = os.path.join("out", name)
            pid = os.fork()
            if pid == 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
                os.close(read_fd)
                _child(codes[name], name, out_path, write_fd, timeout)
            os.close(write_fd)
            running[pid] = (name, read_fd, out_path, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (name, read_fd, _out, started) in list(running.items()):
                if now - started > timeout:
                    with contextlib.suppress(OSError):
                        os.killpg(child, signal.SIGKILL)
                    with contextlib.suppress(OSError):
                        os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    os.close(read_fd)
                    del running[child]
                    print(json.dumps({"name": name, "status": "timeout", "detail": f"over {timeout:g} s"}), flush=True)
            if running:
                soonest = min(started for (_, _, _, started) in running.values()) + timeout
                signal.sigtimedwait([signal.SIGCHLD], max(0.001, soonest - time.monotonic()))
            continue
        if pid not in running:
            continue
        name, read_fd, out_path, _ = running.pop(pid)
        said = os.read(read_fd, 1)
        os.close(read_fd)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # whatever it started dies with it
        if os.WIFSIGNALED(status):
            result = {"status": "signal", "detail": f"killed by signal {os.WTERMSIG(status)}\n{_tail(out_path)}"}
        elif os.WEXITSTATUS(status) == 0 and said == b"P":
            result = {"status": "passed", "detail": ""}
        else:
            result = {"status": "failed", "detail": _tail(out_path)}
        print(json.dumps({"name": name, **result}), flush=True)


if __name__ == "__main__":
    main()
