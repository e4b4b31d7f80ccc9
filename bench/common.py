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


RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def timed(argv: list[str], env: dict[str, str], cwd: str | os.PathLike[str]) -> float:
    """Seconds `argv` took to run to its end (the benchmark stops, with its stderr, if it failed)."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[2:])} failed: {done.stderr[-600:]}")
    return time.perf_counter() - started


def ray_alive(address: str, env: dict[str, str]) -> int:
    """How many nodes of the Ray cluster at `address` are alive (0 when none answers)."""
    done = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR');"
                           " print(sum(1 for n in ray.nodes() if n['Alive']))", address], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.strip() else 0


def ray_node(args: list[str], env: dict[str, str], address: str, before: int) -> tuple[subprocess.Popen[bytes], float]:
    """A Ray node (`ray start ARGS --block`) started as a process group of its own, so it is stopped alone (`ray stop`
    would stop every Ray process on the machine); its start-up time, until the cluster counts it."""
    started = time.perf_counter()
    node = subprocess.Popen([*RAY, "start", *args, "--num-cpus", "1", "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while ray_alive(address, env) <= before:
        if node.poll() is not None or time.perf_counter() - started > 180:
            sys.exit("a Ray node did not start")
        time.sleep(0.3)
    return node, time.perf_counter() - started


def stop_nodes(nodes: list[subprocess.Popen[bytes]]) -> None:
    """Each node's whole process group killed."""
    import signal

    for node in nodes:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
