"""The store at scale: a synthetic evaluation run of 100k calls, then `runs`, `show RUN`, `report RUN` timed with their
peak memory (RSS), each in its own process as a user would run them.

Run: python bench/bench_store.py [--calls 100000] [--steps 25]

The run has calls/steps samples (agent-like: each sample a conversation of `steps` calls whose messages grow), written
through the store's own tables (messages and threads stored once, as the recorder writes them). Prints the wall time
and max RSS of each command, and the database size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert

from k2probe.core.records import CallRecord
from k2probe.recording.schema import CallRow, SampleRow
from k2probe.recording.store import Store, compact_media


def _populate(store: Store, calls: int, steps: int) -> str:
    from sqlalchemy.orm import Session

    plan = {"eval": {"suite": "basic", "routes": ["direct", "gateway"], "epochs": 1}}
    run_id = store.start_run("eval", "direct", plan)
    samples = calls // steps
    rows = []
    with Session(store.engine) as session, session.begin():
        for index in range(samples):
            sample_id = str(uuid.uuid4())
            route = "direct" if index % 2 else "gateway"
            outcome = ("passed", "failed", "passed", "error")[index % 4]
            session.execute(insert(SampleRow).values(
                id=sample_id, run_id=run_id, suite="basic", task_id=f"task-{index}", route=route, epoch=0,
                outcome=outcome, reason="hidden tests failed: exit 1" if outcome == "failed" else None,
                verification={"status": outcome, "output": "E   AssertionError\n" * 5},
                calls=steps, retries=0, prompt_tokens=1000 * steps, completion_tokens=200 * steps,
                reasoning_tokens=50 * steps, cached_tokens=0, cost_usd=0.001 * steps, latency_ms=900.0 * steps,
                started_at=time.time(), finished_at=time.time()))
            messages = [{"role": "system", "content": "You fix repositories. " * 10},
                        {"role": "user", "content": f"Task {index}: fix it. " * 10}]
            for step in range(steps):
                request = {"model": "kimi-k2.7-code", "messages": list(messages), "tool_choice": "auto"}
                record = CallRecord(route=route, model="kimi-k2.7-code", endpoint="/chat/completions", stream=True,
                                    request=request, purpose=f"agent step {step + 1}", status=200,
                                    ttft_ms=300.0 + step, ttfc_ms=400.0, latency_ms=900.0 + step % 50,
                                    itl_ms=[12.0] * 20, prompt_tokens=1000, completion_tokens=200, reasoning_tokens=50,
                                    cost_usd=0.001, price_source="bench", finish_reason="tool_calls",
                                    response_shape=["choices"], sample_id=sample_id, attempt_id=sample_id, step=step,
                                    started_at=time.time())
                data = compact_media(record.as_dict())
                data["thread"] = store._store_thread(session, request["messages"])
                data["request"] = {k: v for k, v in request.items() if k != "messages"}
                rows.append({"run_id": run_id, **data})
                messages += [{"role": "assistant", "content": "", "reasoning_content": f"step {step}",
                              "tool_calls": [{"id": f"c{step}", "type": "function",
                                              "function": {"name": "read_file", "arguments": "{}"}}]},
                             {"role": "tool", "tool_call_id": f"c{step}", "content": f"result {step}\n" * 5}]
                if len(rows) >= 5000:
                    session.execute(insert(CallRow), rows)
                    rows.clear()
        if rows:
            session.execute(insert(CallRow), rows)
    store.finish_run(run_id, "finished", {"samples": {"n": samples}})
    return run_id


PEAK = ("import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n"
        "sys.stdout.buffer.write(done.stdout)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(done.returncode)\n")


def _measure(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Wall time, the command's own peak RSS (MB, read by a fresh parent process) and its output size."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[3:])} failed: {done.stderr.strip()[-400:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1024.0, len(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="k2probe-bench-store-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env["K2PROBE_HOME"] = str(folder / "home")
    os.environ["K2PROBE_HOME"] = env["K2PROBE_HOME"]
    started = time.perf_counter()
    store = Store()
    run_id = _populate(store, args.calls, args.steps)
    store.dispose()
    db = folder / "home" / "k2probe.db"
    print(f"synthetic store: {args.calls} calls in {args.calls // args.steps} samples of {args.steps} steps, written "
          f"in {time.perf_counter() - started:.1f} s; database {db.stat().st_size / 1e6:.1f} MB")
    python = [sys.executable, "-m", "k2probe"]
    for label, argv in (("runs", [*python, "runs", "--json"]),
                        ("show RUN --json", [*python, "show", run_id[:8], "--json"]),
                        ("report RUN", [*python, "report", run_id[:8], "--html", str(folder / "r.html")])):
        seconds, rss, size = _measure(argv, env, folder)
        print(f"{label:<18} {seconds:6.2f} s   peak RSS {rss:6.1f} MB   output {size} bytes")
    print(json.dumps({"database_mb": round(db.stat().st_size / 1e6, 1)}))
    print(f"reproduce: {sys.executable} bench/bench_store.py --calls {args.calls} --steps {args.steps}")


if __name__ == "__main__":
    main()
