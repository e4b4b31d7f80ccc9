"""Sandboxed verification of generated programs, batched: samples hand in programs as they come, a worker thread
verifies whatever has gathered in one sandbox, so a slow test never stalls another sample's stream."""

from __future__ import annotations

import asyncio
import contextlib

from k2probe.sandbox.isolation import Isolation
from k2probe.sandbox.programs import DEFAULT_TIMEOUT_S, ProgramVerdict, verify_programs


class BatchVerifier:
    """`await verify(key, program)` → its verdict; programs handed in together share one sandbox."""

    def __init__(self, iso: Isolation, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_batch: int = 200,
                 linger_s: float = 0.05) -> None:
        self.iso = iso
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._waiting: dict[str, tuple[str, asyncio.Future[ProgramVerdict]]] = {}
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def verify(self, key: str, program: str) -> ProgramVerdict:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())
        future: asyncio.Future[ProgramVerdict] = asyncio.get_running_loop().create_future()
        self._waiting[key] = (program, future)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.linger_s)  # let the samples finishing at the same moment join this batch
            self._wake.clear()
            batch = dict(list(self._waiting.items())[: self.max_batch])
            for key in batch:
                del self._waiting[key]
            if self._waiting:
                self._wake.set()
            if not batch:
                continue
            programs = {key: program for key, (program, _) in batch.items()}
            try:
                verdicts = await asyncio.to_thread(verify_programs, programs, timeout_s=self.timeout_s, iso=self.iso)
            except Exception as exc:  # the harness failed: every sample in the batch is `error`
                verdicts = {key: ProgramVerdict("error", f"verification failed: {type(exc).__name__}: {exc}")
                            for key in batch}
            for key, (_, future) in batch.items():
                if not future.done():
                    future.set_result(verdicts.get(key) or ProgramVerdict("error", "no verdict from the harness"))

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
