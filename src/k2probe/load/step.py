"""One step of a load test (a concurrency or a rate), run by one worker process: requests sent, histograms filled.
Histograms are HdrHistogram's, encoded, so the parent merges workers' results exactly."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from k2probe.load.lean import LeanClient, Shot

METRICS = ("ttft", "ttfc", "itl", "tpot", "e2e", "lag", "ttft_error")
HIGHEST_US = 3_600_000_000  # an hour, in microseconds


def histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


@dataclass
class StepPlan:
    base_url: str
    key: str
    payload: bytes
    stream: bool
    concurrency: int | None = None  # closed loop: this many requests in flight
    rate: float | None = None  # open loop: Poisson arrivals per second
    requests: int | None = None
    duration_s: float | None = None
    slo_us: dict[str, int] = field(default_factory=dict)  # ttft / itl / e2e → limit in µs
    seed: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StepResult:
    sent: int = 0
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    output_tokens: int = 0
    good: int = 0
    merged: int = 0  # streams whose first token shared a socket read with a later token
    wall_s: float = 0.0
    histograms: dict[str, HdrHistogram] = field(default_factory=lambda: {m: histogram() for m in METRICS})

    def add(self, shot: Shot, slo_us: dict[str, int]) -> None:
        if not shot.ok:
            self.failed[shot.cause or "unclassified"] += 1
            return
        self.ok += 1
        self.output_tokens += shot.output_tokens
        self.merged += shot.ttft_merged
        h = self.histograms
        for name, value in (("ttft", shot.ttft_us), ("ttfc", shot.ttfc_us), ("e2e", shot.e2e_us)):
            if value is not None:
                h[name].record_value(max(1, min(value, HIGHEST_US)))
        if shot.server_ttft_us is not None and shot.ttft_us is not None:  # against the server's own stamp
            h["ttft_error"].record_value(max(1, min(abs(shot.ttft_us - shot.server_ttft_us), HIGHEST_US)))
        for gap in shot.itl_us:
            h["itl"].record_value(max(1, min(gap, HIGHEST_US)))
        tpot = None
        if shot.e2e_us and shot.ttft_us is not None and shot.output_tokens > 1:
            tpot = (shot.e2e_us - shot.ttft_us) // (shot.output_tokens - 1)
            h["tpot"].record_value(max(1, min(tpot, HIGHEST_US)))
        worst_itl = max(shot.itl_us, default=0)
        meets = ((slo_us.get("ttft") is None or (shot.ttft_us or shot.e2e_us or 0) <= slo_us["ttft"])
                 and (slo_us.get("itl") is None or worst_itl <= slo_us["itl"])
                 and (slo_us.get("e2e") is None or (shot.e2e_us or 0) <= slo_us["e2e"]))
        self.good += meets

    def encoded(self) -> dict[str, Any]:
        return {"sent": self.sent, "ok": self.ok, "failed": dict(self.failed), "output_tokens": self.output_tokens,
                "good": self.good, "merged": self.merged, "wall_s": self.wall_s,
                "histograms": {m: base64.b64encode(h.encode()).decode() for m, h in self.histograms.items()}}

    def merge(self, other: dict[str, Any]) -> None:
        self.sent += other["sent"]
        self.ok += other["ok"]
        self.failed.update(other["failed"])
        self.output_tokens += other["output_tokens"]
        self.good += other["good"]
        self.merged += other["merged"]
        self.wall_s = max(self.wall_s, other["wall_s"])
        for name, blob in other["histograms"].items():
            self.histograms[name].decode_and_add(base64.b64decode(blob))


async def run_step(plan: StepPlan) -> StepResult:
    """Send the step's requests from this process: closed loop (workers that each wait for their answer) or open
    loop (arrivals on a Poisson schedule, sent whether earlier ones answered or not; the sender's lateness kept)."""
    result = StepResult()
    client = LeanClient(plan.base_url, plan.key, plan.headers, connections=max(64, (plan.concurrency or 0) * 2))
    deadline = time.perf_counter() + plan.duration_s if plan.duration_s else None
    budget = plan.requests
    started = time.perf_counter()

    def more() -> bool:
        if budget is not None and result.sent >= budget:
            return False
        return deadline is None or time.perf_counter() < deadline

    async def one() -> None:
        result.add(await client.shot(plan.payload, plan.stream), plan.slo_us)

    try:
        if plan.concurrency:
            async def user() -> None:
                while more():
                    result.sent += 1  # counted when taken, so the users together send exactly the budget
                    await one()

            await asyncio.gather(*(user() for _ in range(plan.concurrency)))
        else:
            rng = random.Random(plan.seed)
            tasks: set[asyncio.Task[None]] = set()  # only those in flight: memory stays flat in the number sent
            due = time.perf_counter()
            while more():
                due += rng.expovariate(plan.rate or 1.0)
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                lag = int(max(0.0, time.perf_counter() - due) * 1e6)
                result.histograms["lag"].record_value(max(1, min(lag, HIGHEST_US)))
                result.sent += 1
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
    finally:
        await client.aclose()
    result.wall_s = time.perf_counter() - started
    return result


def run_in_worker(plan: StepPlan) -> dict[str, Any]:
    """Entry point of a worker process: its share of the step, encoded for the parent."""
    return asyncio.run(run_step(plan)).encoded()
