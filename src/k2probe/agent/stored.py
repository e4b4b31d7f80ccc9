"""What an attempt keeps of each step (the store's `steps` and the trajectory file): strings over STORED_TEXT_CHARS —
a write_file's content, a flood of text — are cut, with their size and sha256, so what is stored grows with what was
written, not with what the model sent. The requests keep every message whole (stored once, by hash) and the
attempt's diff keeps what reached the workspace."""

from __future__ import annotations

import hashlib
import json
from typing import Any

STORED_TEXT_CHARS = 32 * 1024
STEP_BUDGET_CHARS = 1024 * 1024  # a step still larger once cut (thousands of calls in one turn) keeps 1 KiB a string
SMALL_TEXT_CHARS = 1024


def stored_copy(record: dict[str, Any]) -> dict[str, Any]:
    """The step record as it is stored: long strings cut with a note saying how long they were and their sha256."""
    copy: dict[str, Any] = _cut(record, STORED_TEXT_CHARS)
    if len(json.dumps(copy, default=str)) > STEP_BUDGET_CHARS:
        copy = _cut(record, SMALL_TEXT_CHARS)
    return copy


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{value[:limit]}… [cut for storage: {len(value)} chars in all, sha256 {digest}]"
    if isinstance(value, dict):
        return {key: _cut(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, limit) for item in value]
    return value
