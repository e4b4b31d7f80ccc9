"""What the benchmarks share: a free loopback port, and the emulator started in processes of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_emulator(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`k2probe emulator ARGS` on a free port; returns the process and its base URL once it accepts connections."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "emulator", "--port", str(port), *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("the emulator did not start")
