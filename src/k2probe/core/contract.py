"""The Kimi request rules with Moonshot's exact error bodies (docs/kimi-contract.md §2–§5), one rule per question:
the emulator answers with them and the proxy checks a team's requests with them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOOL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9-_]{2,63}$")
FIXED = {"temperature": 1.0, "top_p": 0.95, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0}
FIXED_TEXT = {"temperature": "1", "top_p": "0.95", "n": "1", "presence_penalty": "0", "frequency_penalty": "0"}
REASONING_KEYS = ("reasoning_content",)


@dataclass
class ApiError(Exception):
    """An error Moonshot answers with: HTTP status, its error type and message, optional Retry-After."""

    status: int
    type: str
    message: str
    retry_after: float | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def is_empty(content: Any) -> bool:
    if content is None:
        return True
    if isinstance(content, str):
        return content.strip() == ""
    if isinstance(content, list):
        return len(content) == 0
    return False


def check_fixed_params(body: dict[str, Any], fixed: dict[str, float] | None = None) -> None:
    """A fixed sampling parameter sent with another value is Moonshot's 400 (omitted or exactly fixed is fine)."""
    for name, value_fixed in (FIXED if fixed is None else fixed).items():
        if name in body and body[name] is not None:
            value = body[name]
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isclose(value, value_fixed):
                raise bad_request(f"invalid {name}: only {FIXED_TEXT.get(name, f'{value_fixed:g}')} is allowed "
                                  "for this model")


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


def check_tool_names(body: dict[str, Any]) -> None:
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


def check_tool_choice(body: dict[str, Any]) -> None:
    """With thinking on, only `auto` or `none`."""
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return
    if choice == "required":
        raise bad_request("tool_choice 'required' is incompatible with thinking enabled")
    raise bad_request("tool_choice 'specified' is incompatible with thinking enabled")


def check_tools(body: dict[str, Any]) -> None:
    check_tool_names(body)
    check_tool_choice(body)


def lacks_reasoning(message: dict[str, Any], reasoning_keys: tuple[str, ...] = REASONING_KEYS) -> bool:
    """An assistant tool-call turn sent back without its reasoning (preserved thinking, §3)."""
    return (message.get("role") == "assistant" and bool(message.get("tool_calls"))
            and not any(key in message and message[key] is not None for key in reasoning_keys))


def reasoning_missing(index: int) -> ApiError:
    return bad_request(f"thinking is enabled but reasoning_content is missing in assistant tool call message at "
                       f"index {index}")


def check_messages(body: dict[str, Any], reasoning_keys: tuple[str, ...] = REASONING_KEYS,
                   each: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Moonshot's message rules, message by message (`each`: a server's own rule, checked in the same order)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("Invalid request: messages must be a non-empty array")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise bad_request(f"Invalid request: message at index {index} has no valid role")
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            if lacks_reasoning(message, reasoning_keys):
                raise reasoning_missing(index)
        elif is_empty(message.get("content")):
            raise bad_request(f"Invalid request: the message at index {index} with role {role} must not be empty")
        if each is not None:
            each(message)


def check_stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None:
        return
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or len(items) > 5 or any(len(str(s).encode()) > 32 for s in items):
        raise bad_request("Invalid request: stop accepts at most 5 strings of at most 32 bytes each")
