"""The proxy's backlog on a real event loop: jobs in the order they came, a slice per loop turn (what a socket
brings meanwhile is handled between slices), a flush that runs them all now, a bound past which they run at once,
and a job that fails said where the loop says errors, the others still run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from k2probe.proxy.backlog import Backlog


def test_jobs_run_in_order_a_slice_per_turn_with_the_loop_served_between() -> None:
    async def main() -> tuple[list[str], list[str]]:
        backlog = Backlog(slice_s=0.001)
        done: list[str] = []
        served: list[str] = []

        def slow(name: str) -> None:
            time.sleep(0.002)  # longer than a slice: one job a turn
            done.append(name)

        for i in range(5):
            backlog.add(slow, f"job{i}")
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: served.append(f"callback after {len(done)} jobs"))
        while backlog.jobs:
            await asyncio.sleep(0)
        return done, served

    done, served = asyncio.run(main())
    assert done == [f"job{i}" for i in range(5)]
    assert served == ["callback after 1 jobs"]  # the loop's other work ran between slices, not after all of them


def test_flush_runs_every_job_now_and_a_full_backlog_runs_at_once() -> None:
    async def main() -> tuple[list[int], list[int], int]:
        backlog = Backlog(most=3)
        done: list[int] = []
        for i in range(3):
            backlog.add(done.append, i)
        before_flush = list(done)
        backlog.flush()
        flushed = list(done)
        for i in range(3, 7):  # the fourth waiting job runs the queue at once
            backlog.add(done.append, i)
        return before_flush, flushed, len(done)

    before_flush, flushed, total = asyncio.run(main())
    assert before_flush == [] and flushed == [0, 1, 2] and total == 7


def test_a_failing_job_is_reported_and_the_rest_still_run() -> None:
    reported: list[dict[str, Any]] = []

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        backlog = Backlog()
        done: list[str] = []

        def broken() -> None:
            raise KeyError("a bug in one job")

        backlog.add(done.append, "before")
        backlog.add(broken)
        backlog.add(done.append, "after")
        while backlog.jobs or backlog.scheduled:
            await asyncio.sleep(0)
        return done

    assert asyncio.run(main()) == ["before", "after"]
    (context,) = reported
    assert isinstance(context["exception"], KeyError) and "bookkeeping job failed" in context["message"]
