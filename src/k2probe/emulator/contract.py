"""The Kimi request contract as the emulator enforces it, with Moonshot's exact error bodies (docs/kimi-contract.md
§2–§5): the rules themselves are core.contract's (the proxy checks requests with the same ones)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

from k2probe.core import contract
from k2probe.core.contract import FIXED as FIXED
from k2probe.core.contract import TOOL_NAME as TOOL_NAME
from k2probe.core.contract import ApiError as ApiError
from k2probe.core.contract import bad_request as bad_request
from k2probe.core.contract import check_fixed_params as check_fixed_params
from k2probe.core.contract import check_stop as check_stop
from k2probe.core.contract import check_thinking as check_thinking
from k2probe.core.contract import check_tools as check_tools

CONTEXT_LIMIT = 262144
HIGH_RISK_MARKER = "K2PROBE_HIGH_RISK"


def estimate_tokens(value: Any) -> int:
    """A stable, cheap token estimate: about four characters a token, over the JSON text of what is counted."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return max(1, math.ceil(len(text) / 4))


def check_messages(body: dict[str, Any], reasoning_keys: tuple[str, ...] = ("reasoning_content",)) -> None:
    """Moonshot's message rules (core.contract), then the emulator's content-filter trigger: a marker in the text."""
    contract.check_messages(body, reasoning_keys, each=_filtered)


def _filtered(message: dict[str, Any]) -> None:
    content = message.get("content")
    if isinstance(content, str) and HIGH_RISK_MARKER in content:
        raise ApiError(400, "content_filter", "The request was rejected because it was considered high risk")


def check_context(body: dict[str, Any], media_tokens: int = 0) -> int:
    """Estimate the prompt's tokens (media counted apart); over the context window is Moonshot's token-limit error."""
    from k2probe.emulator.media import text_only

    tokens = estimate_tokens(text_only(body.get("messages") or [])) + media_tokens
    tokens += estimate_tokens(body["tools"]) if body.get("tools") else 0
    if tokens > CONTEXT_LIMIT:
        raise bad_request(f"Your request exceeded model token limit : {CONTEXT_LIMIT}")
    return tokens


def violations(body: dict[str, Any], *, enforce_fixed: bool = True,
               reasoning_keys: tuple[str, ...] = ("reasoning_content",), media_tokens: int = 0) -> list[str]:
    """Every way `body` breaks the contract (Moonshot answers only the first: `validate_chat`), for the request log:
    the same checks, each fixed parameter on its own."""
    fixed = [functools.partial(check_fixed_params, {name: body[name]}) for name in FIXED
             if enforce_fixed and name in body]
    checks: list[Callable[[], object]] = [
        *fixed, lambda: check_thinking(body), lambda: check_tools(body), lambda: check_stop(body),
        lambda: check_messages(body, reasoning_keys), lambda: check_context(body, media_tokens)]
    found: list[str] = []
    for check in checks:
        try:
            check()
        except ApiError as err:
            found.append(err.message)
        except Exception as exc:  # a body too odd for a check: said, never raised from the log
            found.append(f"unreadable: {type(exc).__name__}")
    return found


def validate_chat(
    body: dict[str, Any], *, enforce_fixed: bool = True, reasoning_keys: tuple[str, ...] = ("reasoning_content",),
    media_tokens: int = 0,
) -> int:
    """Raise the ApiError Moonshot would answer for this body, in Moonshot's order; return the prompt token estimate."""
    if enforce_fixed:
        check_fixed_params(body)
    check_thinking(body)
    check_tools(body)
    check_stop(body)
    check_messages(body, reasoning_keys)
    return check_context(body, media_tokens)
