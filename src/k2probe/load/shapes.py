"""What a load test's requests hold: prompt and output lengths drawn from a seeded distribution, or prompts read from a
JSONL dataset — so a sweep sends the mix of requests a server meets, reproducibly (the same seed, the same requests)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from k2probe.core.errors import UsageError

POOL = 1024  # distinct requests drawn at most; a longer step cycles through them (each still numbered)
POOL_BYTES = 64 * 1024 * 1024  # and no more bytes of bodies than this, whatever the prompt length


@dataclass(frozen=True)
class Lengths:
    """A token count per request: `mean`, or normal around it with `stdev` (rounded, clipped to 1…`upper`)."""

    mean: int
    stdev: float = 0.0
    upper: int = 200_000

    @property
    def fixed(self) -> bool:
        return self.stdev == 0

    def draw(self, rng: random.Random) -> int:
        if self.fixed:
            return self.mean
        return max(1, min(self.upper, round(rng.gauss(self.mean, self.stdev))))

    def as_json(self) -> dict[str, float]:
        return {"mean": self.mean, "stdev": self.stdev}

    def words(self) -> str:
        return f"{self.mean}" if self.fixed else f"{self.mean}±{self.stdev:g} (normal)"

    @classmethod
    def parse(cls, text: str, option: str, upper: int) -> Lengths:
        """`N` (every request N) or `MEAN:STDEV` (normal, clipped to 1…upper); anything else is one line, exit 2."""
        mean_text, _, stdev_text = text.partition(":")
        try:
            mean = int(mean_text)
            stdev = float(stdev_text) if stdev_text else 0.0
        except ValueError:
            raise UsageError(f"{option} {text!r}: not N or MEAN:STDEV", fix=f"e.g. {option} 512 or {option} 512:128") \
                from None
        if not 1 <= mean <= upper or not math.isfinite(stdev) or not 0 <= stdev <= upper:
            raise UsageError(f"{option} {text!r}: the mean must be 1…{upper} and the stdev 0…{upper}",
                             fix=f"e.g. {option} 512 or {option} 512:128")
        return cls(mean, stdev, upper)


Messages = list[dict[str, Any]]
DATASET_FORM = 'one JSON object a line: {"prompt": "…"} or {"messages": [{"role": "user", "content": "…"}, …]}'


def read_dataset(path: Path | str) -> list[Messages]:
    """The prompts of a JSONL file, each as chat messages; a line that is not one is one line naming it (exit 2)."""
    from k2probe.core.files import read_text

    text = read_text(path, "--dataset")
    prompts: list[Messages] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        problem = None
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            item, problem = None, "not JSON"
        if problem is None:
            messages = _messages(item)
            if isinstance(messages, str):
                problem = messages
            else:
                prompts.append(messages)
        if problem is not None:
            raise UsageError(f"--dataset {path} line {number}: {problem}", fix=f"write {DATASET_FORM}")
    if not prompts:
        raise UsageError(f"--dataset {path} holds no prompt", fix=f"write {DATASET_FORM}")
    return prompts


def _messages(item: Any) -> Messages | str:
    """The line's prompt as messages, or what is wrong with it."""
    if not isinstance(item, dict):
        return "not a JSON object"
    prompt, messages = item.get("prompt"), item.get("messages")
    if (prompt is None) == (messages is None):
        return 'give exactly one of "prompt" and "messages"'
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            return '"prompt" is not a non-empty string'
        return [{"role": "user", "content": prompt}]
    if not isinstance(messages, list) or not messages:
        return '"messages" is not a non-empty list'
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            return f'"messages"[{index}] is not an object with a "role" string and a "content"'
    if not any(m["role"] == "user" for m in messages):
        return '"messages" has no "user" message'
    return [dict(m) for m in messages]


def numbered(messages: Messages, nonce: str) -> Messages:
    """The messages with `nonce` before the first user message's text: the request's own number where a server's
    prompt cache would see it (a shared system prompt before it stays shared, as in real traffic)."""
    out = [dict(m) for m in messages]
    for message in out:
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            message["content"] = nonce + content
        elif isinstance(content, list):
            message["content"] = [{"type": "text", "text": nonce}, *content]
        break
    return out
