from collections.abc import Callable, Hashable, Iterable
from typing import Any


def dedupe(items: Iterable[Any], key: Callable[[Any], Hashable] | None = None) -> list[Any]:
    """Items without duplicates, in first-seen order; `key` decides what counts as the same item."""
    seen: set[Hashable] = set()
    out = []
    for item in items:
        marker = key(item) if key else item
        if marker not in seen:
            seen.add(marker)
            out.append(item)
    return out
