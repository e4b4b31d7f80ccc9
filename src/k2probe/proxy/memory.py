"""What the proxy relayed, remembered so a later request can be checked against it: each tool call the model made
(by its id) with the reasoning and content of the turn that made it, and which conversation (session) each request
belongs to — found from the message prefixes, never from anything the client says about itself."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Relayed:
    """One tool call the route answered with, as the proxy passed it on."""

    call_id: str
    name: str
    arguments: str
    reasoning: str | None  # the turn's reasoning_content exactly as relayed (None: the route sent none)
    content: str
    session: str
    request: int


def tool_calls(message: Any) -> list[dict[str, Any]]:
    """An assistant message's tool calls that are objects (whatever else a client put there is not one)."""
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _digest(message: Any) -> bytes:
    return hashlib.sha256(json.dumps(message, sort_keys=True, ensure_ascii=False, default=str).encode()).digest()


def chain(messages: list[Any]) -> list[bytes]:
    """The hash of every prefix of `messages` (prefix k = messages[:k+1]), each built on the one before."""
    out: list[bytes] = []
    previous = b""
    for message in messages:
        previous = hashlib.sha256(previous + _digest(message)).digest()
        out.append(previous)
    return out


LIMIT = 200_000  # tool calls and conversations remembered; past it the oldest are forgotten (a day-long run stays small)


def bounded(table: dict[Any, Any]) -> None:
    while len(table) > LIMIT:
        del table[next(iter(table))]


@dataclass
class Memory:
    """Tool calls relayed (by id), and the message chains seen (the whole messages of each request → its session)."""

    new_session: Callable[[], str]
    calls: dict[str, Relayed] = field(default_factory=dict)
    by_session: dict[str, list[Relayed]] = field(default_factory=dict)
    chains: dict[bytes, str] = field(default_factory=dict)

    def session_for(self, messages: list[Any]) -> str:
        """The conversation a request continues: the one that made a tool call it carries back, else the one whose
        earlier request is a prefix of its messages (the longest), else a new one."""
        prefixes = chain(messages)
        session = self._by_tool_call(messages)
        if session is None:
            session = next((self.chains[h] for h in reversed(prefixes) if h in self.chains), None)
        if session is None:
            session = self.new_session()
        if prefixes:
            self.chains[prefixes[-1]] = session
            bounded(self.chains)
        return session

    def _by_tool_call(self, messages: list[Any]) -> str | None:
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "assistant":
                for call in tool_calls(message):
                    known = self.calls.get(str(call.get("id")))
                    if known is not None:
                        return known.session
        return None

    def remember(self, message: dict[str, Any], session: str, request: int) -> None:
        """Keep the tool calls of an answer the proxy relayed, with its turn's reasoning and content."""
        reasoning = message.get("reasoning_content")
        content = message.get("content")
        for call in tool_calls(message):
            if not call.get("id"):
                continue
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            relayed = Relayed(str(call["id"]), str(function.get("name") or ""), str(function.get("arguments") or ""),
                              reasoning if isinstance(reasoning, str) else None,
                              content if isinstance(content, str) else "", session, request)
            self.calls[relayed.call_id] = relayed
            self.by_session.setdefault(session, []).append(relayed)
        bounded(self.calls)
        bounded(self.by_session)

    def turn(self, message: dict[str, Any]) -> Relayed | None:
        """The relayed record of an assistant tool-call turn sent back (any of its calls' ids), if any."""
        for call in tool_calls(message):
            if (found := self.calls.get(str(call.get("id")))) is not None:
                return found
        return None
