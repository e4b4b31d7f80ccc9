"""The live figures of a running proxy: requests, findings by kind, repairs, refusals, latency percentiles."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from k2probe.core.stats import percentile


@dataclass
class Stats:
    """Counted as requests are handled (one event loop: no lock needed)."""

    requests: int = 0
    streamed: int = 0
    refused: int = 0  # answered locally (enforce)
    repaired: int = 0  # requests changed by repair
    errors: int = 0  # the route failed or could not be reached
    unchecked: int = 0  # bodies too odd for a check, forwarded as they were
    findings: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    # how requests went (k2probe's own working, not the route's): "sent early" from the server's callback or "sent"
    # by their task; streams "relayed in callback", "relayed awaited", "slowed" (a client slow to read: the rest awaited)
    ways: Counter[str] = field(default_factory=Counter)

    def p(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    def line(self) -> str:
        """One line for the terminal: requests, findings by kind, p50/p99 latency."""
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.findings.items())) or "no findings"
        p50, p99 = self.p(50), self.p(99)
        lat = "–" if p50 is None or p99 is None else f"p50 {p50:.0f} ms · p99 {p99:.0f} ms (n={len(self.latencies_ms)})"
        extra = "".join(f" · {n} {what}" for what, n in (("refused", self.refused), ("repaired", self.repaired),
                                                          ("route errors", self.errors)) if n)
        return (f"{self.requests} requests ({self.streamed} streamed) in {len(self.sessions)} sessions · {kinds}"
                f"{extra} · {lat}")
