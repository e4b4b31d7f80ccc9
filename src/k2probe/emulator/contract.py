"""The Kimi request contract as the emulator enforces it, with Moonshot's exact error bodies (docs/kimi-contract.md
§2–§5)."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONTEXT_LIMIT = 262144
TOOL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9-_]{2,63}$")
FIXED = {"temperature": 1.0, "top_p": 0.95, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0}
FIXED_TEXT = {"temperature": "1", "top_p": "0.95", "n": "1", "presence_penalty": "0", "frequency_penalty": "0"}
HIGH_RISK_MARKER = "K2PROBE_HIGH_RISK"


@dataclass
class ApiError(Exception):
    """An error the emulator answers with: HTTP status, Moonshot error type and message, optional Retry-After."""

    status: int
    type: str
    message: str
    retry_after: float | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def estimate_tokens(value: Any) -> int:
    """A stable, cheap token estimate: about four characters a token, over the JSON text of what is counted."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return max(1, math.ceil(len(text) / 4))


def _is_empty(content: Any) -> bool:
    if content is None:
        return True
    if isinstance(content, str):
        return content.strip() == ""
    if isinstance(content, list):
        return len(content) == 0
    return False


def check_fixed_params(body: dict[str, Any]) -> None:
    for name, fixed in FIXED.items():
        if name in body and body[name] is not None:
            value = body[name]
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isclose(value, fixed):
                raise bad_request(f"invalid {name}: only {FIXED_TEXT[name]} is allowed for this model")


def check_thinking(body: dict[str, Any]) -> None:
    if "thinking" not in body or body["thinking"] is None:
        return
    thinking = body["thinking"]
    if not isinstance(thinking, dict):
        raise bad_request(
            f"invalid thinking: expected an object like {{\"type\": \"enabled\"}}, got {type(thinking).__name__}"
        )
    if thinking.get("type") != "enabled":
        raise bad_request("invalid thinking: only type=enabled is allowed for this model")


def check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise bad_request("Invalid request: tools must be an array")
    seen: set[str] = set()
    for tool in tools:
        name = (tool.get("function") or {}).get("name", "") if isinstance(tool, dict) else ""
        if not TOOL_NAME.match(str(name)):
            raise bad_request(f"Invalid request: function name {name!r} must match ^[a-zA-Z_][a-zA-Z0-9-_]{{2,63}}$")
        if name in seen:
            raise bad_request(f"Invalid request: function name {name} is duplicated")
        seen.add(name)
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return
    if choice == "required":
        raise bad_request("tool_choice 'required' is incompatible with thinking enabled")
    raise bad_request("tool_choice 'specified' is incompatible with thinking enabled")


def check_messages(body: dict[str, Any], reasoning_keys: tuple[str, ...] = ("reasoning_content",)) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("Invalid request: messages must be a non-empty array")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise bad_request(f"Invalid request: message at index {index} has no valid role")
        role = message["role"]
        tool_calls = message.get("tool_calls") if role == "assistant" else None
        if role == "assistant" and tool_calls:
            if not any(key in message and message[key] is not None for key in reasoning_keys):
                raise bad_request(
                    "thinking is enabled but reasoning_content is missing in assistant tool call message "
                    f"at index {index}"
                )
        elif _is_empty(message.get("content")):
            raise bad_request(f"Invalid request: the message at index {index} with role {role} must not be empty")
        content = message.get("content")
        if isinstance(content, str) and HIGH_RISK_MARKER in content:
            raise ApiError(400, "content_filter", "The request was rejected because it was considered high risk")


def check_stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None:
        return
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or len(items) > 5 or any(len(str(s).encode()) > 32 for s in items):
        raise bad_request("Invalid request: stop accepts at most 5 strings of at most 32 bytes each")


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
