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
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import free_port, ray_node, stop_nodes, timed


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
        timed(eval_, env, folder)  # the preflights, kept in K2PROBE_HOME: not part of what is compared
        local = [timed(eval_, env, folder) for _ in range(args.runs)]
        head, head_s = ray_node(["--head", "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats",
                              f"--temp-dir={folder / 'ray'}"], env, address, 0)
        nodes.append(head)
        one = [timed(ray_, env, folder) for _ in range(args.runs)]
        second, node_s = ray_node(["--address", address], env, address, 1)
        nodes.append(second)
        two = [timed(ray_, env, folder) for _ in range(args.runs)]
    finally:
        stop_nodes(nodes)
    print(f"ray start --head {head_s:.1f} s, a second node {node_s:.1f} s (until the cluster counts it)")
    for label, times in (("local executor", local), ("ray, 1 node", one), ("ray, 2 nodes", two)):
        median = statistics.median(times)
        print(f"{label:<16} 12 attempts in {median:5.1f} s (median of {len(times)}), {12 / median:4.2f} attempts/s")
    print(f"reproduce: {sys.executable} bench/bench_ray_basic.py --runs {args.runs} --concurrency {args.concurrency}")


if __name__ == "__main__":
    main()
