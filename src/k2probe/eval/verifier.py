"""Sandboxed verification of generated programs as samples come: each program is judged in a sandbox of its own by
the shared pool of checker processes (sandbox/programs.py), so a slow test never stalls another sample's stream and
no program, sample or route ever shares a process, a folder or a pid namespace with another."""

from __future__ import annotations

import asyncio

from k2probe.core.results import Outcome
from k2probe.sandbox.isolation import Isolation
from k2probe.sandbox.programs import DEFAULT_TIMEOUT_S, Program, ProgramVerdict, submit


class BatchVerifier:
    """`await verify(key, program)` → its verdict."""

    def __init__(self, iso: Isolation, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.iso = iso
        self.timeout_s = timeout_s

    async def verify(self, key: str, program: Program) -> ProgramVerdict:
        try:
            return await asyncio.wrap_future(submit(key, program, timeout_s=self.timeout_s, iso=self.iso))
        except Exception as exc:
            return ProgramVerdict(Outcome.ERROR, f"verification failed: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        """Nothing to release: the checker pool outlives a run (its processes end with k2probe)."""
