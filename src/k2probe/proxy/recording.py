"""The proxy's run in the store: each session (one conversation) a sample of suite `proxy`, each proxied call recorded
with its session as `sample_id` and its request number as `step`, each finding kept by session and request — so the
run's metrics are eval's own (eval.metrics) and a session can be reviewed (`k2probe review`) like a sample.

The writing is done by a process of its own (recording.writer): redaction, message hashing and SQL never hold the
serving loop's GIL, which is what a relayed chunk waits on. A store in memory (tests' `sqlite://`) cannot be shared
with a child, so it is written by the store's own thread, as before."""

from __future__ import annotations

import uuid

from k2probe.contexts import RunContext
from k2probe.core.records import CallRecord
from k2probe.proxy.checks import Finding
from k2probe.recording.store import Store
from k2probe.recording.writer import StoreWriter

SUITE = "proxy"


class StoreSink:
    """Writes a proxy run as it happens: sessions, calls and findings, through a writer process (or the store's
    thread for a store in memory: the store and the writer take the same writes). `close` returns once every write
    is committed."""

    def __init__(self, run: RunContext, route: str) -> None:
        self.run, self.route = run, route
        self.writer = None if run.store.in_memory else StoreWriter(run.store.url)
        self.target: Store | StoreWriter = self.writer or run.store

    def session(self, number: int) -> str:
        sample_id = str(uuid.uuid4())
        self.target.start_sample(self.run.run_id, SUITE, f"session-{number}", self.route, sample_id)
        return sample_id

    def call(self, record: CallRecord) -> None:
        self.run.call_count += 1
        self.target.add_call(self.run.run_id, record)

    def findings(self, session: str, request: int, findings: list[Finding]) -> None:
        self.target.add_findings(self.run.run_id, session, request, [f.model_dump() for f in findings])

    @property
    def failure(self) -> str | None:
        """Why the run can no longer be recorded (None while it can)."""
        return self.writer.failure if self.writer is not None else None

    def close(self) -> None:
        """Every write committed; StoreFailed when one could not be."""
        if self.writer is not None:
            self.writer.close()
        self.run.store.flush()
