"""Storage of one agent attempt: a 30-step conversation recorded through the store, against its final request.

Run: python bench/bench_storage.py [--steps 30] [--tool-bytes 2000]

Each step resends the whole conversation (as the agent loop does) plus an assistant turn with reasoning and a tool
result. Prints the bytes the store keeps for the attempt's calls (requests without messages, thread nodes, messages),
the final request's size, their ratio, and what storing each request whole would cost instead.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from k2probe.core.records import CallRecord
from k2probe.recording.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tool-bytes", type=int, default=2000)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="k2probe-bench-storage-")) / "k2probe.db"
    store = Store(f"sqlite:///{path}")
    run_id = store.start_run("agent", "bench", {})
    messages: list[dict[str, object]] = [{"role": "system", "content": "You fix repositories. " * 40},
                                         {"role": "user", "content": "Fix the failing test in text/slug.py. " * 10}]
    whole = 0
    request: dict[str, object] = {}
    for step in range(args.steps):
        request = {"model": "kimi-k2.7-code", "messages": list(messages), "tool_choice": "auto",
                   "tools": [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
                             for n in ("list_files", "read_file", "search", "apply_patch", "run_tests", "finish")]}
        whole += len(json.dumps(request))
        store.add_call(run_id, CallRecord(route="bench", model="kimi-k2.7-code", endpoint="/chat/completions",
                                          stream=True, request=request, attempt_id="a", step=step))
        messages += [{"role": "assistant", "content": "", "reasoning_content": f"Step {step}: I read the file. " * 8,
                      "tool_calls": [{"id": f"call_{step}", "type": "function",
                                      "function": {"name": "read_file", "arguments": '{"path": "text/slug.py"}'}}]},
                     {"role": "tool", "tool_call_id": f"call_{step}", "content": "x" * args.tool_bytes}]
    store.dispose()
    with sqlite3.connect(path) as db:
        kept = db.execute("select coalesce(sum(length(body)), 0) from messages").fetchone()[0]
        kept += db.execute("select coalesce(sum(length(hash) + length(coalesce(parent, '')) + length(message) + 4), 0)"
                           " from threads").fetchone()[0]
        kept += db.execute("select sum(length(request) + length(coalesce(thread, ''))) from calls").fetchone()[0]
    final = len(json.dumps(request))
    print(f"{args.steps}-step attempt: the store keeps {kept / 1024:.1f} KiB for its calls; the final request is "
          f"{final / 1024:.1f} KiB (ratio {kept / final:.2f}); every request stored whole would be "
          f"{whole / 1024:.1f} KiB ({whole / final:.1f}x)")
    print(f"reproduce: {sys.executable} bench/bench_storage.py --steps {args.steps} --tool-bytes {args.tool_bytes}")


if __name__ == "__main__":
    main()
