"""One step of a load test (a concurrency or a rate), run by one worker process: requests sent, histograms filled.
Histograms are HdrHistogram's, encoded, so the parent merges workers' results exactly."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from k2probe.load.lean import LeanClient, Shot

METRICS = ("ttft", "ttfc", "itl", "tpot", "e2e", "lag", "ttft_error")
HIGHEST_US = 3_600_000_000  # an hour, in microseconds


def _numbering(payload: bytes) -> tuple[bytes, bytes] | None:
    """The payload around the 24 zeros of its prompt's "request 000…: " (None when it has none)."""
    mark = b"request " + b"0" * 24
    at = payload.find(mark)
    if at < 0:
        return None
    start = at + len(b"request ")
    return payload[:start], payload[start + 24:]


_SENT = itertools.count()  # requests numbered by this process, over every step it runs


def histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


@dataclass
class StepPlan:
    base_url: str
    key: str
    payloads: list[bytes]  # request j of this worker sends payloads[(offset + j × stride) % len]: workers share them out
    stream: bool
    concurrency: int | None = None  # closed loop: this many requests in flight
    rate: float | None = None  # open loop: Poisson arrivals per second
    requests: int | None = None
    duration_s: float | None = None
    slo_us: dict[str, int] = field(default_factory=dict)  # ttft / itl / e2e → limit in µs
    seed: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    record_calls: bool = False  # hand every request's figures to the reporter (else counts and histograms only)
    unique: bool = False  # number each request's prompt (the payload's zeros after "request "): no cache hit
    worker: int = 0
    offset: int = 0
    stride: int = 1
    label: str = ""  # the step's name (c=8, 40/s): snapshots carry it, so a late one is never taken for the next


@dataclass
class StepResult:
    sent: int = 0
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    output_tokens: int = 0
    good: int = 0
    merged: int = 0  # streams whose first token shared a socket read with a later token
    wall_s: float = 0.0
    reports: int = 0  # progress snapshots this worker sent (the parent waits for all of them)
    worker: int = 0
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
                "good": self.good, "merged": self.merged, "wall_s": self.wall_s, "reports": self.reports,
                "worker": self.worker,
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


Report = Callable[[dict[str, Any]], None]
REPORT_EVERY_S = 0.5


def compact(shot: Shot, body: int = 0) -> dict[str, Any]:
    """One request's figures, small enough to send to the parent process for `--record-calls`; `body`: which of the
    step's payloads it sent."""
    return {"body": body, "ok": shot.ok, "cause": shot.cause, "status": shot.status, "ttft_us": shot.ttft_us,
            "ttfc_us": shot.ttfc_us, "e2e_us": shot.e2e_us, "itl_us": shot.itl_us, "out": shot.output_tokens,
            "at": shot.started_at}


async def run_step(plan: StepPlan, report: Report | None = None) -> StepResult:
    """Send the step's requests from this process: closed loop (workers that each wait for their answer) or open
    loop (arrivals on a Poisson schedule, sent whether earlier ones answered or not; the sender's lateness kept).
    `report` gets a progress snapshot every half second and a last one at the end (with the calls, if recorded)."""
    result = StepResult(worker=plan.worker)
    calls: list[dict[str, Any]] = []
    reports = 0

    def snapshot() -> None:
        nonlocal reports
        if report is None:
            return
        reports += 1
        first = result.histograms["ttft" if plan.stream else "e2e"]
        report({"worker": plan.worker, "label": plan.label, "sent": result.sent, "ok": result.ok,
                "failed": dict(result.failed), "first": base64.b64encode(first.encode()).decode(), "calls": calls[:]})
        calls.clear()

    async def reporting() -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            snapshot()

    client = LeanClient(plan.base_url, plan.key, plan.headers, connections=max(64, (plan.concurrency or 0) * 2))
    deadline = time.perf_counter() + plan.duration_s if plan.duration_s else None
    budget = plan.requests
    started = time.perf_counter()

    def more() -> bool:
        if budget is not None and result.sent >= budget:
            return False
        return deadline is None or time.perf_counter() < deadline

    payloads = plan.payloads
    count = len(payloads)
    pieces = [_numbering(p) for p in payloads] if plan.unique else []
    pid = f"{os.getpid() & 0xFFFFFFFF:08x}"
    taken = itertools.count()

    async def one() -> None:
        index = (plan.offset + next(taken) * plan.stride) % count
        payload = payloads[index]
        if pieces and (numbered := pieces[index]) is not None:
            # this process's id and its request's number: unique across workers and steps
            head, tail = numbered
            payload = b"".join((head, pid.encode(), f"{next(_SENT):016x}".encode(), tail))
        try:
            shot = await client.shot(payload, plan.stream)
        except Exception:  # a fault of this client must not lose the request: counted, by kind
            shot = Shot(False, "client_error")
        result.add(shot, plan.slo_us)
        if plan.record_calls:
            calls.append(compact(shot, index))

    ticker = asyncio.create_task(reporting()) if report is not None else None
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
        if ticker is not None:
            ticker.cancel()
        await client.aclose()
    result.wall_s = time.perf_counter() - started
    snapshot()
    result.reports = reports
    return result


_progress: Any = None  # a worker process's queue to the parent (set by the pool's initializer)


def attach(queue: Any) -> None:
    """Pool initializer: progress snapshots of this worker go to `queue`. The worker's exit never waits for the
    queue to be read (the parent drains what it was promised, then may stop listening)."""
    global _progress
    queue.cancel_join_thread()
    _progress = queue


def run_in_worker(plan: StepPlan) -> dict[str, Any]:
    """Entry point of a worker process: its share of the step, encoded for the parent; progress on the queue."""
    queue = _progress
    return asyncio.run(run_step(plan, queue.put if queue is not None else None)).encoded()
