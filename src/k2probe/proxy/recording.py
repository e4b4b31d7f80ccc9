"""The proxy's run in the store: each session (one conversation) a sample of suite `proxy`, each proxied call recorded
with its session as `sample_id` and its request number as `step`, each finding kept by session and request — so the
run's metrics are eval's own (eval.metrics) and a session can be reviewed (`k2probe review`) like a sample."""

from __future__ import annotations

from k2probe.contexts import RunContext
from k2probe.core.records import CallRecord
from k2probe.proxy.checks import Finding

SUITE = "proxy"


class StoreSink:
    """Writes a proxy run as it happens (calls and findings through the store's recorder thread)."""

    def __init__(self, run: RunContext, route: str) -> None:
        self.run, self.route = run, route

    def session(self, number: int) -> str:
        return self.run.store.start_sample(self.run.run_id, SUITE, f"session-{number}", self.route)

    def call(self, record: CallRecord) -> None:
        self.run.record(record)

    def findings(self, session: str, request: int, findings: list[Finding]) -> None:
        self.run.store.add_findings(self.run.run_id, session, request, [f.model_dump() for f in findings])
