"""`--concurrency auto`: a saturation sweep — concurrency raised step by step until goodput stops rising or latency
or failures break — and the knee it finds, by one rule stated once (KneeRule, shown in --help and in the output)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class KneeRule:
    """Concurrency `start`, ×`factor` each step, up to `limit`. The sweep stops after a step that is broken (over
    `max_failed` of its requests failed, or its p99 — TTFT streamed, latency otherwise — over `max_latency_growth`×
    the first step's) or stalled (goodput, requests/s that succeeded within the SLO, rose less than `min_gain` over
    the best step so far). The knee is the unbroken step of highest goodput."""

    start: int = 1
    factor: int = 2
    limit: int = 1024
    min_gain: float = 0.10
    max_failed: float = 0.05
    max_latency_growth: float = 4.0
    requests_per_user: int = 4  # a step sends at least this many requests per user in flight

    def words(self) -> str:
        return (f"concurrency {self.start}, {self.start * self.factor}, {self.start * self.factor ** 2}, … up to "
                f"{self.limit}, until a step's goodput rises less than {100 * self.min_gain:.0f}% over the best so "
                f"far, over {100 * self.max_failed:.0f}% of its requests fail, or its p99 passes "
                f"{self.max_latency_growth:g}× the first step's; the knee is the step of highest goodput before that")


RULE = KneeRule()


def _p99(step: dict[str, Any], stream: bool) -> float | None:
    value = (step["ttft_ms"] if stream else step["e2e_ms"])["p99"]
    return float(value) if value is not None else None


@dataclass
class Sweep:
    """The running sweep: `next_concurrency` after each step says the next one, or None when it is over."""

    rule: KneeRule
    stream: bool
    stopped: str = ""  # why the sweep ended, in words

    def broken(self, step: dict[str, Any], first: dict[str, Any]) -> str:
        """Why this step is past the knee by failures or latency ("" when it is not)."""
        sent = step["requests"] or 1
        failed = sum(step["failed"].values())
        if failed / sent > self.rule.max_failed:
            return f"{100 * failed / sent:.0f}% of its requests failed"
        base, now = _p99(first, self.stream), _p99(step, self.stream)
        if base and now is not None and now > self.rule.max_latency_growth * base:
            return f"its p99 {now:.0f} ms is over {self.rule.max_latency_growth:g}× the first step's {base:.0f} ms"
        return ""

    def next_concurrency(self, steps: list[dict[str, Any]]) -> int | None:
        if not steps:
            return self.rule.start
        last = steps[-1]
        label = f"c={last['concurrency']}"
        why = self.broken(last, steps[0])
        if why:
            self.stopped = f"stopped at {label}: {why}"
            return None
        best = max(s["goodput"]["rps"] for s in steps[:-1]) if len(steps) > 1 else None
        if best is not None and last["goodput"]["rps"] < best * (1 + self.rule.min_gain):
            self.stopped = (f"stopped at {label}: goodput {last['goodput']['rps']:.1f}/s rose less than "
                            f"{100 * self.rule.min_gain:.0f}% over the best {best:.1f}/s")
            return None
        following = int(last["concurrency"]) * self.rule.factor
        if following > self.rule.limit:
            self.stopped = f"stopped at {label}: the limit of {self.rule.limit} in flight (no knee below it)"
            return None
        return following

    def knee(self, steps: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The unbroken step of highest goodput, its figures in brief; None when every step broke."""
        whole = [s for s in steps if not self.broken(s, steps[0])]
        if not whole:
            return None
        best = max(whole, key=lambda s: s["goodput"]["rps"])
        first = best["ttft_ms"] if self.stream else best["e2e_ms"]
        return {"concurrency": best["concurrency"], "rps": best["rps"], "goodput_rps": best["goodput"]["rps"],
                "output_tps": best["output_tps"], "p50_ms": first["p50"], "p99_ms": first["p99"],
                "metric": "ttft" if self.stream else "e2e"}

    def as_json(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        return {"rule": asdict(self.rule), "knee": self.knee(steps), "stopped": self.stopped}
