"""The first clean request (the guide's code review), and the known-good record it leaves behind."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from k2probe import __version__
from k2probe.client.transport import Outcome
from k2probe.contexts import RouteContext, RunContext
from k2probe.core.config import known_good_path
from k2probe.core.guide import review_request
from k2probe.core.sanitize import Change, sanitise


@dataclass
class SmokeResult:
    outcome: Outcome
    changes: list[Change]
    known_good: dict[str, Any] | None
    path: str | None


def known_good_record(routed: RouteContext, body: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The exact working setup: base URL, model id, request body, response shape, latency, tokens."""
    call = outcome.last
    return {
        "route": routed.route.name,
        "base_url": routed.route.base_url,
        "model": routed.route.model,
        "api_key_env": routed.route.api_key_env or "AI_GATEWAY_API_KEY",
        "emulated": routed.route.emulated,
        "request": body,
        "response_shape": outcome.shape,
        "finish_reason": outcome.finish_reason,
        "latency_ms": call.latency_ms,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "reasoning_tokens": call.reasoning_tokens,
        "cached_tokens": call.cached_tokens,
        "cost_usd": call.cost_usd,
        "price_source": call.price_source,
        "retries": outcome.retries,
        "saved_at": time.time(),
        "tool_version": __version__,
    }


async def run_smoke(routed: RouteContext, run: RunContext, *, strict: bool = False) -> SmokeResult:
    """Send the guide's review request; on success save the known-good record in the store and as JSON."""
    sanitised = sanitise(review_request(routed.route.model), routed.profile, strict=strict)
    async with routed.transport(run.record) as transport:
        outcome = await transport.chat(sanitised.body, purpose="smoke: the guide's code review")
    if not outcome.ok or not outcome.content:
        return SmokeResult(outcome, sanitised.changes, None, None)
    record = known_good_record(routed, sanitised.body, outcome)
    run.store.save_known_good(run.run_id, routed.route.name, record)
    path = known_good_path(routed.route.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run.redactor.text(json.dumps(record, indent=2)) + "\n", encoding="utf-8")
    return SmokeResult(outcome, sanitised.changes, record, str(path))
