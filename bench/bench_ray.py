"""`eval --executor ray` against the local executor: HumanEval's 164 canonical solutions judged from a samples file
(no model call), on this machine, on a one-node and on a two-node Ray cluster started here; plus Ray's import and
node start-up cost.

Run: python bench/bench_ray.py [--runs 3]

Prints the median wall time of each (n = --runs) and programs per second. On one machine the nodes share the same
cores: a second node shows the seam's overhead and the spreading of work, not a speed-up; a real cluster adds cores.
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args()
    from k2probe.tasks.humaneval import problems

    folder = Path(tempfile.mkdtemp(prefix="k2probe-bench-ray-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env.update(K2PROBE_HOME=str(folder / "home"), RAY_USAGE_STATS_ENABLED="0")
    (folder / "samples.jsonl").write_text("".join(json.dumps({"task_id": t, "completion": p.canonical_solution}) + "\n"
                                                  for t, p in problems().items()))
    imported = timed([sys.executable, "-c", "import ray"], env, folder) - timed([sys.executable, "-c", "pass"], env,
                                                                                  folder)
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen[bytes]] = []
    eval_ = [sys.executable, "-m", "k2probe", "eval", "humaneval", "--samples", "samples.jsonl"]
    try:
        local = [timed(eval_, env, folder) for _ in range(args.runs)]
        started, head = ray_node(["--head", "--port", str(port), "--include-dashboard", "false",
                                  "--disable-usage-stats", f"--temp-dir={folder / 'ray'}"], env, address, 0)
        nodes.append(started)
        one = [timed([*eval_, "--executor", "ray", "--ray-address", address], env, folder) for _ in range(args.runs)]
        second, node = ray_node(["--address", address], env, address, 1)
        nodes.append(second)
        two = [timed([*eval_, "--executor", "ray", "--ray-address", address], env, folder) for _ in range(args.runs)]
    finally:
        stop_nodes(nodes)
    print(f"import ray: {imported:.2f} s more than a bare interpreter; ray start --head {head:.1f} s, "
          f"a second node {node:.1f} s")
    for label, times in (("local executor", local), ("ray, 1 node", one), ("ray, 2 nodes", two)):
        median = statistics.median(times)
        print(f"{label:<16} 164 programs in {median:5.1f} s (median of {len(times)}), {164 / median:5.1f} programs/s")
    print(f"reproduce: {sys.executable} bench/bench_ray.py --runs {args.runs}")


if __name__ == "__main__":
    main()
