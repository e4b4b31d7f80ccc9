"""The agent loop's own overhead per step (everything but waiting for the model), and sandbox start-up per test run.

Run: python bench/bench_agent.py [--rounds 3] [--sandbox-runs 20]
The loop runs every shipped task against the in-process emulator with no injected latency; the time spent inside
the model request is measured around each transport call and subtracted, and so is the time spent in sandboxed test
runs (reported on their own). Sandbox start-up is the time to run `true` in the sandbox, next to a bare subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("K2PROBE_HOME", tempfile.mkdtemp(prefix="k2probe-bench-"))

from k2probe.agent import AgentTask, run_agent
from k2probe.agent import runner as runner_module
from k2probe.agent import tools as tools_module
from k2probe.api import command_contexts
from k2probe.client.transport import Transport
from k2probe.core.stats import percentile
from k2probe.emulator import EmulatorSettings
from k2probe.sandbox.isolation import isolation, make_readable, run
from k2probe.tasks.shipped import load_suite

MODEL_WAIT: list[float] = []
SANDBOX_RUNS: list[float] = []
_original_chat = Transport.chat


async def timed_chat(self, body, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    try:
        return await _original_chat(self, body, **kwargs)
    finally:
        MODEL_WAIT.append(time.perf_counter() - started)


def timed_run(command, workspace, limits=None, iso=None, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    try:
        return run(command, workspace, limits, iso, **kwargs)
    finally:
        SANDBOX_RUNS.append(time.perf_counter() - started)


def loop_overhead(rounds: int) -> None:
    Transport.chat = timed_chat  # type: ignore[method-assign]
    tools_module.run = timed_run  # run_tests
    runner_module.run = timed_run  # the final verification
    per_step: list[float] = []
    all_runs: list[float] = []
    with command_contexts("bench", emulator=EmulatorSettings()) as (routed, run):
        for _ in range(rounds):
            for task in load_suite():
                MODEL_WAIT.clear()
                SANDBOX_RUNS.clear()
                started = time.perf_counter()
                result = asyncio.run(run_agent(routed, run, AgentTask(task.statement, task.repo, task.test_cmd,
                                                                  task.hidden, task.hidden_cmd, task.id)))
                wall = time.perf_counter() - started
                assert result.passed, task.id
                per_step.append((wall - sum(MODEL_WAIT) - sum(SANDBOX_RUNS)) / len(result.loop.steps))
                all_runs.extend(SANDBOX_RUNS)
    p95 = percentile(per_step, 95) or 0.0
    print(f"loop overhead per step (workspace copy + git baseline, tools, trajectory file + SQLite writes; "
          f"model wait and sandboxed test runs excluded): median {statistics.median(per_step) * 1000:.1f} ms, "
          f"p95 {p95 * 1000:.1f} ms (n={len(per_step)} task runs)")
    print(f"one sandboxed pytest run of a task's tests: median {statistics.median(all_runs) * 1000:.0f} ms "
          f"(n={len(all_runs)})")


def sandbox_startup(runs: int) -> None:
    ws = Path(tempfile.mkdtemp(prefix="k2probe-bench-ws-")) / "repo"
    ws.mkdir()
    make_readable(ws)
    sandboxed, bare = [], []
    for _ in range(runs):
        started = time.perf_counter()
        run("true", ws)
        sandboxed.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run(["sh", "-c", "true"], cwd=ws, check=True)
        bare.append(time.perf_counter() - started)
    s, b = statistics.median(sandboxed) * 1000, statistics.median(bare) * 1000
    print(f"sandbox start-up ({isolation().line()}): median {s:.1f} ms vs bare subprocess {b:.1f} ms "
          f"(ratio {s / b:.1f}, n={runs})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sandbox-runs", type=int, default=20)
    args = parser.parse_args()
    sandbox_startup(args.sandbox_runs)
    loop_overhead(args.rounds)
    print(f"reproduce: {sys.executable} bench/bench_agent.py --rounds {args.rounds} --sandbox-runs {args.sandbox_runs}")
