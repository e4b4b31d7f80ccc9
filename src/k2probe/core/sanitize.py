"""The sanitiser: what a caller asks for becomes the body to send plus the list of changes, each with its reason."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from k2probe.core.errors import RequestRefused
from k2probe.core.profiles import Profile


@dataclass(frozen=True)
class Change:
    """One thing the sanitiser changed (or only noted), and why."""

    field: str
    action: str  # dropped | replaced | set | note
    reason: str

    def line(self) -> str:
        return f"{self.action} {self.field}: {self.reason}"


@dataclass
class Sanitised:
    body: dict[str, Any]
    changes: list[Change]


def _same(value: Any, fixed: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isclose(value, fixed)


def sanitise(request: dict[str, Any], profile: Profile, *, strict: bool = False) -> Sanitised:
    """Make `request` acceptable to the model of `profile`. With strict, refuse instead of changing anything."""
    body = dict(request)
    changes: list[Change] = []
    model = profile.name

    for name, fixed in profile.fixed.items():
        if name in body and body[name] is not None and not _same(body[name], fixed):
            changes.append(Change(name, "dropped",
                                  f"{name}={body[name]!r} dropped: fixed at {fixed:g} for {model}"))
            del body[name]

    thinking = body.get("thinking")
    if profile.thinking_forced and thinking is not None and not (
        isinstance(thinking, dict) and thinking.get("type") == "enabled"
    ):
        changes.append(Change("thinking", "dropped",
                              f"thinking={thinking!r} dropped: {model} only accepts thinking enabled"))
        del body["thinking"]

    choice = body.get("tool_choice")
    allowed = profile.tool_choice_allowed
    if choice is not None and allowed is not None and choice not in allowed:
        shown = choice if isinstance(choice, str) else "a named function"
        changes.append(Change("tool_choice", "replaced",
                              f"tool_choice {shown!r} replaced by 'auto': {model} accepts only "
                              f"{' or '.join(allowed)} while thinking"))
        body["tool_choice"] = "auto"

    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = profile.default_max_tokens
        changes.append(Change("max_tokens", "set",
                              f"max_tokens={profile.default_max_tokens}: an explicit output budget for {model}"))
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    if profile.thinking_forced and isinstance(budget, int) and budget < profile.min_thinking_budget:
        changes.append(Change("max_tokens", "note",
                              f"budget {budget} is below the {profile.min_thinking_budget} Moonshot advises for "
                              "thinking models: reasoning counts against it and may end the answer with 'length'"))

    refusals = [c for c in changes if c.action in ("dropped", "replaced")]
    if strict and refusals:
        raise RequestRefused("refused (--strict): " + "; ".join(c.reason for c in refusals),
                             fix="remove these fields or run without --strict to let k2probe drop them")
    return Sanitised(body, changes)
