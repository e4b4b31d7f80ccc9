"""The seed guide's requests, word for word: the first code review (Steps 2–3) and the streaming prompt (Step 5)."""

from __future__ import annotations

from typing import Any

REVIEW_SYSTEM = "You are a senior software engineer. Return concise code review notes and a safe patch plan."
REVIEW_USER = (
    "Review this function for edge cases, then propose a typed Python rewrite:\n\n"
    "def parse_total(row):\n"
    " return float(row['price']) * int(row['qty'])\n"
)
STREAM_SYSTEM = "You are a coding assistant. Explain the plan before writing code."
STREAM_USER = "Write a FastAPI endpoint that uploads a CSV file and validates required columns."


def review_request(model: str) -> dict[str, Any]:
    """Step 3's request: the smoke test."""
    return {"model": model, "messages": [{"role": "system", "content": REVIEW_SYSTEM},
                                         {"role": "user", "content": REVIEW_USER}],
            "max_tokens": 2048, "stream": False}


def streaming_request(model: str) -> dict[str, Any]:
    """Step 5's request: the streaming check."""
    return {"model": model, "messages": [{"role": "system", "content": STREAM_SYSTEM},
                                         {"role": "user", "content": STREAM_USER}],
            "max_tokens": 4096, "stream": True}
