"""k2probe's call path vs a bare openai SDK call, against the emulator, same run: the per-call overhead ratio.

Run: python bench/bench_call_path.py [--calls 200]
Both clients talk to the same in-process emulator (no injected latency), interleaved call by call so machine noise
hits both alike; the figures are medians of per-call wall time, and the ratio k2probe / bare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from openai import AsyncOpenAI
from pydantic import SecretStr

from k2probe.client.transport import Transport
from k2probe.core.config import Route
from k2probe.core.profiles import profile_for
from k2probe.core.records import CallRecord
from k2probe.core.sanitize import sanitise
from k2probe.emulator import EmulatorServer, EmulatorSettings
from k2probe.recording.store import Store

KEY = "sk-k2probe-emulator"
MESSAGES = [{"role": "system", "content": "You are a senior software engineer."},
            {"role": "user", "content": "Review this Python function: def parse_total(row): ..."}]


async def bare_call(client: AsyncOpenAI, stream: bool) -> None:
    if stream:
        response = await client.chat.completions.create(model="kimi-k2.7-code", messages=MESSAGES,  # type: ignore[call-overload]
                                                        max_tokens=2048, stream=True)
        async for _ in response:
            pass
    else:
        await client.chat.completions.create(model="kimi-k2.7-code", messages=MESSAGES,  # type: ignore[call-overload]
                                             max_tokens=2048)


async def main(calls: int, db_url: str) -> None:
    with EmulatorServer(EmulatorSettings(api_key=KEY)) as server:
        route = Route(name="bench", base_url=server.base_url, api_key=SecretStr(KEY), api_key_env=None,
                      model="kimi-k2.7-code")
        store = Store(db_url)
        run_id = store.start_run("bench", "bench", {})

        def record(call: CallRecord) -> None:
            store.add_call(run_id, call)

        ours = Transport(route, profile_for(route.model), on_call=record)
        bare = AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
        print(f"k2probe call path vs bare openai SDK, {calls} calls each, emulator on {server.base_url}")
        for stream in (False, True):
            times: dict[str, list[float]] = {"bare": [], "k2probe": []}
            for i in range(calls + 5):
                for name in ("bare", "k2probe") if i % 2 else ("k2probe", "bare"):
                    started = time.perf_counter()
                    if name == "bare":
                        await bare_call(bare, stream)
                    else:
                        body = sanitise({"model": route.model, "messages": MESSAGES, "max_tokens": 2048,
                                         "stream": stream}, ours.profile).body
                        await ours.chat(body)
                    if i >= 5:  # warm-up excluded
                        times[name].append((time.perf_counter() - started) * 1000.0)
            b, k = statistics.median(times["bare"]), statistics.median(times["k2probe"])
            label = "streaming" if stream else "non-streaming"
            print(f"{label:>14}: bare {b:.2f} ms · k2probe {k:.2f} ms (sanitise + SDK + timing + SQLite record) · "
                  f"ratio {k / b:.2f} (medians, n={len(times['bare'])})")
        await ours.aclose()
        await bare.close()
        store.dispose()
    print(f"reproduce: {sys.executable} bench/bench_call_path.py --calls {calls}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--db", default=None, help="store URL (default: a SQLite file in a temporary folder)")
    args = parser.parse_args()
    import tempfile

    db = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='k2probe-bench-call-')}/k2probe.db"
    asyncio.run(main(args.calls, db))
