"""Start-up stays cheap: `routes` and `snippet` (commands a user runs often, before anything is sent) start within
10× a bare interpreter — a ratio measured in one run, the fastest of five each, so a busy moment on a loaded machine
counts for neither."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .conftest import SCRUB


def _fastest_s(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr[-1000:]
    return min(times)


def test_routes_and_snippet_start_within_ten_times_a_bare_interpreter(workdir: Path):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    assert subprocess.run([sys.executable, "-m", "k2probe", "smoke"], cwd=workdir, env=env, capture_output=True,
                          timeout=120).returncode == 0  # a known-good record for `snippet`
    bare = _fastest_s([sys.executable, "-c", "pass"], workdir, env)
    for command in (["routes"], ["snippet", "--lang", "curl"]):
        took = _fastest_s([sys.executable, "-m", "k2probe", *command], workdir, env)
        assert took < 10 * bare, f"{command[0]}: {took * 1000:.0f} ms against {bare * 1000:.0f} ms for python -c pass"
