"""Emulator settings: key, personality, injected latency and faults, limits, seed."""

from __future__ import annotations

from dataclasses import dataclass, field

from k2probe.core.personalities import PERSONALITIES as PERSONALITIES  # re-exported: the names live in core

FAULT_KINDS = ("rate_limit", "overloaded", "quota", "server_error", "unavailable", "cut", "malformed")
DEFAULT_KEY = "sk-k2probe-emulator"


@dataclass
class EmulatorSettings:
    """How the emulator behaves. Faults map a kind from FAULT_KINDS to the share of requests (0..1) it hits."""

    api_key: str = DEFAULT_KEY
    personality: str = "moonshot"
    faults: dict[str, float] = field(default_factory=dict)
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    rpm: int | None = None
    max_concurrency: int | None = None
    seed: int = 0
    retry_after_s: float = 1.0
    organization: str = "org-k2probe-emulator"
    max_body_bytes: int = 100 * 1024 * 1024
    slip_rate: float = 0.0  # share of scripted agent steps that slip (malformed args, wrong patch, unknown tool)
    wrong_rate: float = 0.0  # share of HumanEval answers that are wrong
    tool_fault_rate: float = 0.0  # share of tool calls broken (unparsable, a required field missing, written as text)
    aliases: dict[str, str] = field(default_factory=dict)  # gateway alias → model id; answers name the model id
    file_max_bytes: int = 100 * 1024 * 1024
    file_max_count: int = 1000
    file_max_total_bytes: int = 10 * 1024 * 1024 * 1024
    log: bool = False  # one line per request on the `k2probe.emulator` logger, every contract violation named

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
        bad = {k: v for k, v in self.faults.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"fault rates must be between 0 and 1: {bad}")
        if self.personality not in PERSONALITIES:
            raise ValueError(f"unknown personality {self.personality!r}; known: {', '.join(PERSONALITIES)}")


def parse_faults(items: list[str]) -> dict[str, float]:
    """Parse `KIND=RATE` items (RATE defaults to 1)."""
    faults: dict[str, float] = {}
    for item in items:
        kind, _, rate = item.partition("=")
        try:
            faults[kind.strip()] = float(rate) if rate else 1.0
        except ValueError as exc:
            raise ValueError(f"bad fault {item!r}: write KIND=RATE, e.g. rate_limit=0.1") from exc
    return faults
