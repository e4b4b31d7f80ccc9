"""Where sample units run. A unit is self-contained — (suite ref, sample id, route, epoch) → SampleResult — so a
scheduler needs nothing but the units and a worker that turns one into its result: the local scheduler runs them on
this event loop behind the concurrency gate; a distributed one (Ray, a later issue) sends them to workers that load
the suite by its ref and open the route by its name. The worker holds per-sample isolation (an exception is that
sample's `error`), so every scheduler keeps it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from k2probe.core.results import SampleResult


@dataclass(frozen=True)
class Unit:
    """One sample to run: its run (whose stored config holds the plan), the store's row id, the suite's ref (name,
    folder or file: loadable anywhere), the sample's id in that suite, the route's name and the epoch."""

    run_id: str
    sample_id: str
    suite: str
    task_id: str
    route: str
    epoch: int


Worker = Callable[[Unit], Awaitable[SampleResult]]
Sink = Callable[[Unit, SampleResult], None]


class Scheduler(Protocol):
    """Runs units to results, handing each to `sink` as it lands; returns the units it had to leave unfinished (the
    run's time ran out). An exception from the worker or from `check` (the store failing) stops the run: the units
    still running are cancelled and the exception propagates."""

    async def run(self, units: Sequence[Unit], worker: Worker, sink: Sink) -> list[Unit]: ...


class LocalScheduler:
    """Every unit a task on this event loop, at most `concurrency` running at once, for `timeout_s` at most; `check`
    is called about once a second (it raises to stop the run: the store failing)."""

    def __init__(self, concurrency: int, timeout_s: float | None = None,
                 check: Callable[[], None] | None = None) -> None:
        self.concurrency, self.timeout_s, self.check = concurrency, timeout_s, check

    async def run(self, units: Sequence[Unit], worker: Worker, sink: Sink) -> list[Unit]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(unit: Unit) -> None:
            async with gate:
                result = await worker(unit)
            sink(unit, result)

        running = {asyncio.ensure_future(one(u)): u for u in units}
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s
        waiting: set[asyncio.Future[None]] = set(running)
        try:
            while waiting:
                left = 1.0 if deadline is None else min(1.0, deadline - loop.time())
                if left <= 0:
                    break
                done, waiting = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if (exc := task.exception()) is not None:
                        raise exc
                if self.check is not None:
                    self.check()
        except BaseException:
            await cancel(waiting)
            raise
        await cancel(waiting)
        return [running[task] for task in running if task in waiting]


async def cancel(tasks: set[asyncio.Future[None]]) -> None:
    """Cancel these units and wait until each has stopped (its calls recorded as cancelled), whatever it raised."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
