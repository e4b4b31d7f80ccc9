"""The proxy's bookkeeping queue: what can wait (a request's checks in observe mode, an answer's parse, accounting,
memory and record) runs in order, a slice per turn of the event loop, so bytes that arrive meanwhile — the next
request, the next chunk — are relayed first instead of waiting behind a whole wave's bookkeeping."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from k2probe.recording.recorder import StoreFailed

Job = tuple[Callable[..., None], tuple[Any, ...]]


class Backlog:
    """Jobs run first in, first out: a request's check queued after the answers that came before it still sees their
    turns remembered. A slice runs at most `slice_s` (one job at least) and the loop polls its sockets before the
    next; past `most` jobs waiting, an added job runs the queue at once, so bookkeeping never falls unboundedly behind.
    A store that failed is the run's to notice (proxy/run.py), not a job's."""

    def __init__(self, slice_s: float = 0.0001, most: int = 2000) -> None:
        self.slice_s, self.most = slice_s, most
        self.jobs: deque[Job] = deque()
        self.scheduled = False

    def __len__(self) -> int:
        return len(self.jobs)

    def add(self, job: Callable[..., None], *args: Any) -> None:
        self.jobs.append((job, args))
        if len(self.jobs) > self.most:
            self.flush()
        elif not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._slice)

    def _slice(self) -> None:
        until = time.perf_counter() + self.slice_s
        jobs = self.jobs
        while jobs:
            self._run(jobs.popleft())
            if time.perf_counter() >= until:
                break
        if jobs:
            asyncio.get_running_loop().call_soon(self._slice)
        else:
            self.scheduled = False

    def flush(self) -> None:
        """Every job waiting, now (before a check that must see them, and when the proxy stops)."""
        jobs = self.jobs
        while jobs:
            self._run(jobs.popleft())

    @staticmethod
    def _run(job: Job) -> None:
        run, args = job
        try:
            run(*args)
        except StoreFailed:
            pass
        except Exception as exc:  # a bug in one job's bookkeeping: said where the loop says errors, the rest run
            asyncio.get_running_loop().call_exception_handler(
                {"message": "k2probe proxy: a bookkeeping job failed", "exception": exc})
