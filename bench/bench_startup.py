"""Start-up time of the commands a person types most, next to a bare interpreter: medians of N runs each.

Run: python bench/bench_startup.py [--runs 15]

The machine is shared and noisy, so each command is timed in turns with `python -c pass`, and the figure to read is the
median difference (what k2probe itself costs) next to the target of 0.3 s. A smoke run on the built-in emulator first
gives `snippet` a known-good record to print. Byte-code caching is on, as on a user's machine (PYTHONDONTWRITEBYTECODE
is dropped from the environment), and each command runs once untimed first so its caches are warm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = [["--help"], ["--version"], ["routes"], ["snippet", "--lang", "curl"], ["runs"]]


def _time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cwd = tempfile.mkdtemp(prefix="k2probe-bench-startup-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env["K2PROBE_HOME"] = os.path.join(cwd, "home")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "k2probe", "smoke"], env=env, cwd=cwd, capture_output=True, check=True)
    bare = [sys.executable, "-c", "pass"]
    print(f"{'command':<28} {'median':>8} {'bare python':>12} {'k2probe own':>12}  (n={args.runs})")
    for command in COMMANDS:
        argv = [sys.executable, "-m", "k2probe", *command]
        ours, base = [], []
        _time(argv, env, cwd)  # warm: byte code written, file cache filled
        for _ in range(args.runs):
            ours.append(_time(argv, env, cwd))
            base.append(_time(bare, env, cwd))
        mine, plain = statistics.median(ours), statistics.median(base)
        print(f"{' '.join(command):<28} {mine * 1000:>6.0f} ms {plain * 1000:>9.0f} ms {(mine - plain) * 1000:>9.0f} ms")
    print(f"reproduce: {sys.executable} bench/bench_startup.py --runs {args.runs}")


if __name__ == "__main__":
    main()
