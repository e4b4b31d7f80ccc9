def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """base * 2**attempt seconds, never more than cap."""
    return min(cap, base * 2**attempt)
