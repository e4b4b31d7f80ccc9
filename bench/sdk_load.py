"""What a user would write instead of `k2probe bench`: an asyncio script on the official openai SDK, N requests in
flight for D seconds, printing requests per second. Used by bench_load.py.

Run: python bench/sdk_load.py BASE_URL KEY CONCURRENCY SECONDS
"""

from __future__ import annotations

import asyncio
import sys
import time

from openai import AsyncOpenAI

MESSAGES = [{"role": "user", "content": "Review this function for correctness and propose a patch. " * 8}]


async def main(base_url: str, key: str, concurrency: int, seconds: float) -> None:
    client = AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)
    done = 0
    deadline = time.perf_counter() + seconds

    async def user() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await client.chat.completions.create(model="kimi-k2.7-code", messages=MESSAGES,  # type: ignore[arg-type]
                                                 max_tokens=16)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    print(f"{done / (time.perf_counter() - started):.1f}")
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
