"""TTFT as k2probe measures it, against an emulator (its own process) told to wait a fixed TTFT, at N concurrent streams.

Run: python bench/bench_ttft_concurrency.py [--streams 200] [--ttft-ms 200] [--max-tokens 64]

Prints the error of k2probe's TTFT against the injected one and against the emulator's own stamp (its first token
written, counted from the request's kernel arrival) as min / p50 / p99 / max with n, and the largest pool wait and
connect time, which k2probe records apart (pool_ms, connect_ms) and keeps out of TTFT. Against the injected TTFT, the
error includes the emulator's own lateness (2 cores shared by it and the client); against its stamp, it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from pydantic import SecretStr

from common import start_emulator
from k2probe.client.transport import Transport
from k2probe.core.config import Route
from k2probe.core.profiles import profile_for
from k2probe.core.stamps import STAMP_HEADER


async def _measure(route: Route, streams: int, max_tokens: int) -> list:  # type: ignore[type-arg]
    async with Transport(route, profile_for(route.model, None)) as transport:
        body = {"model": route.model, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "max_tokens": max_tokens}
        await asyncio.gather(*(transport.chat(body) for _ in range(streams)))  # warm-up: connections opened
        outcomes = await asyncio.gather(*(transport.chat(body) for _ in range(streams)))
    return list(outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--ttft-ms", type=float, default=200.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--itl-ms", type=float, default=20.0)
    args = parser.parse_args()
    server, base_url = start_emulator("--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms))
    try:
        route = Route(name="bench", base_url=base_url, api_key=SecretStr("sk-k2probe-emulator"),
                      api_key_env="X", model="kimi-k2.7-code", headers={STAMP_HEADER: "1"})
        outcomes = asyncio.run(_measure(route, args.streams, args.max_tokens))
    finally:
        server.terminate()
    calls = [o.last for o in outcomes]

    def line(label: str, errors: list[float]) -> None:
        errors.sort()
        p99 = errors[max(0, int(0.99 * len(errors)) - 1)]
        print(f"TTFT − {label} at {args.streams} streams (n={len(errors)}): min {errors[0]:+.2f}, p50 "
              f"{statistics.median(errors):+.2f}, p99 {p99:+.2f}, max {errors[-1]:+.2f} ms")

    line(f"injected {args.ttft_ms:.0f} ms", [c.ttft_ms - args.ttft_ms for c in calls if c.ttft_ms is not None])
    line("the server's own stamp", [o.last.ttft_ms - o.server_ttft_ms for o in outcomes
                                    if o.last.ttft_ms is not None and o.server_ttft_ms is not None])
    print(f"recorded apart: pool wait max {max(c.pool_ms for c in calls):.1f} ms, connect max "
          f"{max(c.connect_ms for c in calls):.1f} ms; failures {sum(1 for c in calls if c.error_type)}")
    print(f"reproduce: {sys.executable} bench/bench_ttft_concurrency.py --streams {args.streams} "
          f"--ttft-ms {args.ttft_ms:g} --itl-ms {args.itl_ms:g} --max-tokens {args.max_tokens}")


if __name__ == "__main__":
    main()
