"""Gateway personalities: how a relay in front of Moonshot changes errors, streams, field names and validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from k2probe.emulator.contract import ApiError


@dataclass(frozen=True)
class Personality:
    """One behaviour profile of the server the client talks to."""

    name: str
    model_prefix: str = ""
    reasoning_field: str = "reasoning_content"  # the name under which reasoning is sent back to the client
    strip_reasoning: bool = False  # drop reasoning from responses entirely (a lossy relay)
    enforce_fixed: bool = True  # False: silently ignore fixed sampling params instead of rejecting
    keepalive_comment: str | None = None
    tight_data_prefix: bool = False  # "data:{...}" without the space
    errors_in_stream: bool = False  # 5xx after a stream is requested come as an SSE error event on HTTP 200
    usage_cost: bool = False
    litellm: bool = False  # rewrites requests, usage and errors as a LiteLLM proxy's moonshot/ provider does

    def reasoning_keys(self) -> tuple[str, ...]:
        """Message keys accepted as carrying reasoning back in history."""
        if self.name == "openrouter":
            return ("reasoning_content", "reasoning", "reasoning_details")
        return ("reasoning_content",)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        if self.litellm:
            from k2probe.emulator.litellm import wrap

            return wrap(error).body()
        if self.name != "openrouter":
            return error.body()
        return {"error": {"code": error.status, "message": error.message,
                          "metadata": {"raw": json.dumps(error.body()), "provider_name": "Moonshot AI"}}}


PERSONALITY = {
    "moonshot": Personality("moonshot"),
    "openrouter": Personality("openrouter", model_prefix="moonshotai/", reasoning_field="reasoning",
                              keepalive_comment=": OPENROUTER PROCESSING", tight_data_prefix=True,
                              errors_in_stream=True, usage_cost=True),
    "lossy-relay": Personality("lossy-relay", strip_reasoning=True),
    "param-dropper": Personality("param-dropper", enforce_fixed=False),
    "litellm": Personality("litellm", usage_cost=True, litellm=True),
}
