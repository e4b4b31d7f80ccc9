"""`eval basic --executor ray` against the local executor: the 12 shipped repository tasks, each an agent attempt
against the emulator (its scripted model), on this machine, on a one-node and on a two-node Ray cluster started here
(each node a `ray start --block` process group of its own, stopped alone: never `ray stop`, which would stop every Ray
process on the machine). The preflights are run once before timing (they are kept in K2PROBE_HOME).

Run: python bench/bench_ray_basic.py [--runs 3] [--concurrency 8]

Prints the median wall time of each (n = --runs) and attempts per second. On one machine the nodes share the same
cores: a second node shows the seam's overhead (an actor, that is a worker process, per attempt) and the spreading of
attempts, not a speed-up; a real cluster adds cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import free_port

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[2:])} failed: {done.stderr[-600:]}")
    return time.perf_counter() - started


def _alive(address: str, env: dict[str, str]) -> int:
    done = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR');"
                           " print(sum(1 for n in ray.nodes() if n['Alive']))", address], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.strip() else 0


def _node(args: list[str], env: dict[str, str], address: str, before: int) -> tuple[subprocess.Popen[bytes], float]:
    """A node started as a process group of its own; its start-up time (until the cluster counts it)."""
    started = time.perf_counter()
    node = subprocess.Popen([*RAY, "start", *args, "--num-cpus", "1", "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while _alive(address, env) <= before:
        if node.poll() is not None or time.perf_counter() - started > 180:
            sys.exit("a Ray node did not start")
        time.sleep(0.3)
    return node, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="k2probe-bench-ray-basic-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env.update(K2PROBE_HOME=str(folder / "home"), RAY_USAGE_STATS_ENABLED="0")
    port = free_port()
    address = f"127.0.0.1:{port}"
    eval_ = [sys.executable, "-m", "k2probe", "eval", "basic", "--concurrency", str(args.concurrency)]
    ray_ = [*eval_, "--executor", "ray", "--ray-address", address]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        _timed(eval_, env, folder)  # the preflights, kept in K2PROBE_HOME: not part of what is compared
        local = [_timed(eval_, env, folder) for _ in range(args.runs)]
        head, head_s = _node(["--head", "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats",
                              f"--temp-dir={folder / 'ray'}"], env, address, 0)
        nodes.append(head)
        one = [_timed(ray_, env, folder) for _ in range(args.runs)]
        second, node_s = _node(["--address", address], env, address, 1)
        nodes.append(second)
        two = [_timed(ray_, env, folder) for _ in range(args.runs)]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    print(f"ray start --head {head_s:.1f} s, a second node {node_s:.1f} s (until the cluster counts it)")
    for label, times in (("local executor", local), ("ray, 1 node", one), ("ray, 2 nodes", two)):
        median = statistics.median(times)
        print(f"{label:<16} 12 attempts in {median:5.1f} s (median of {len(times)}), {12 / median:4.2f} attempts/s")
    print(f"reproduce: {sys.executable} bench/bench_ray_basic.py --runs {args.runs} --concurrency {args.concurrency}")


if __name__ == "__main__":
    main()
