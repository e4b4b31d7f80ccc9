"""What the benchmarks share: a free loopback port, and the emulator started in processes of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that keeps a child process (and its own children) on these CPUs; None leaves it free."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start_emulator(*args: str, env: dict[str, str] | None = None,
                   cpus: set[int] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`k2probe emulator ARGS` on a free port (on `cpus` only, if given); returns the process and its base URL once
    it accepts connections."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "emulator", "--port", str(port), *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cpus))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("the emulator did not start")
