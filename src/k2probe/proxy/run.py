"""A proxy run: serve the route behind a local endpoint until the time is up or the user stops it, recording every
call, session and finding; then what it measured — the findings, the live figures, eval's nine metrics of the run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from k2probe.contexts import RouteContext, RunContext
from k2probe.core.results import Model, RouteMetrics
from k2probe.proxy.app import Handled, Mode, Proxy
from k2probe.proxy.checks import Finding
from k2probe.proxy.recording import StoreSink
from k2probe.proxy.server import ProxyServer
from k2probe.proxy.stats import Stats


class RequestFinding(Finding):
    """A finding with the request (its number in the run) and the session it was found in."""

    request: int
    session: str


class LatencyFigures(Model):
    p50_ms: float | None = None
    p99_ms: float | None = None
    n: int = 0


class ProxyOutcome(Model):
    """What a proxy run saw: the `proxy --json` document."""

    run_id: str
    route: str
    emulated: bool
    mode: Literal["observe", "enforce", "repair"]
    base_url: str
    status: Literal["finished", "interrupted"]
    requests: int
    streamed: int
    sessions: int
    refused: int
    repaired: int
    route_errors: int
    findings_by_kind: dict[str, int] = Field(default_factory=dict)
    latency: LatencyFigures = Field(default_factory=LatencyFigures)
    findings: list[RequestFinding] = Field(default_factory=list)
    metrics: RouteMetrics | None = None  # eval's nine metrics of the run's calls (None before any call)

    def summary(self) -> dict[str, object]:
        """What the run row keeps (the figures, not the findings: those are rows of their own)."""
        return {"mode": self.mode, "requests": self.requests, "sessions": self.sessions, "refused": self.refused,
                "repaired": self.repaired, "route_errors": self.route_errors,
                "findings_by_kind": self.findings_by_kind}


def serve(routed: RouteContext, run: RunContext, *, mode: Mode = "observe", host: str = "127.0.0.1", port: int = 0,
          token: str | None = None, duration_s: float | None = None,
          on_started: Callable[[str], None] | None = None, on_handled: Callable[[Handled], None] | None = None,
          tick: Callable[[Stats], None] | None = None, tick_s: float = 0.5) -> ProxyOutcome:
    """Serve until `duration_s` passes (`finished`) or Ctrl-C / SIGTERM (`interrupted`: the caller re-raises it once
    it has said what was measured)."""
    sink = StoreSink(run, routed.route.name)
    proxy = Proxy(routed.route, routed.profile, mode=mode, token=token, sink=sink, on_handled=on_handled)
    status: Literal["finished", "interrupted"] = "finished"
    try:
        with ProxyServer(proxy, host, port) as server:
            base_url = server.base_url
            if on_started is not None:
                on_started(base_url)
            ends = None if duration_s is None else time.monotonic() + duration_s
            try:
                while server.alive and (ends is None or time.monotonic() < ends) and sink.failure is None:
                    time.sleep(min(tick_s, max(0.0, ends - time.monotonic())) if ends is not None else tick_s)
                    if tick is not None:
                        tick(proxy.stats)
            except KeyboardInterrupt:
                status = "interrupted"
    finally:
        sink.close()  # every call committed before the run is read back (StoreFailed when one could not be)
    return outcome(run, routed, proxy, base_url, status)


def outcome(run: RunContext, routed: RouteContext, proxy: Proxy, base_url: str,
            status: Literal["finished", "interrupted"]) -> ProxyOutcome:
    """The run's document, read back from the store (the findings, eval's metrics) and the live figures."""
    from k2probe.eval.metrics import OVERALL, compute

    store, stats = run.store, proxy.stats
    labels = {s.id: s.task_id for s in store.samples(run.run_id)}
    findings = [RequestFinding(**{k: row[k] for k in RequestFinding.model_fields if k in row},
                               session=labels.get(row["sample_id"] or "", "–")) for row in store.findings(run.run_id)]
    metrics = compute(store, run.run_id).root.get(OVERALL)
    return ProxyOutcome(run_id=run.run_id, route=routed.route.name, emulated=routed.emulator_url is not None,
                        mode=proxy.mode, base_url=base_url, status=status, requests=stats.requests,
                        streamed=stats.streamed, sessions=len(stats.sessions), refused=stats.refused,
                        repaired=stats.repaired, route_errors=stats.errors,
                        findings_by_kind=dict(sorted(stats.findings.items())),
                        latency=LatencyFigures(p50_ms=stats.p(50), p99_ms=stats.p(99), n=len(stats.latencies_ms)),
                        findings=findings, metrics=metrics)
