def is_leap(year: int) -> bool:
    """True for leap years."""
    return year % 4 == 0
