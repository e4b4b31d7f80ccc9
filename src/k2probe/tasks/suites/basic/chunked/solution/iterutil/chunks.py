from collections.abc import Iterable
from itertools import islice
from typing import Any


def chunked(items: Iterable[Any], size: int) -> list[list[Any]]:
    """Consecutive chunks of `size` items; the last may be shorter."""
    if size < 1:
        raise ValueError("size must be at least 1")
    iterator = iter(items)
    chunks = []
    while chunk := list(islice(iterator, size)):
        chunks.append(chunk)
    return chunks
