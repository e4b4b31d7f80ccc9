def is_leap(year: int) -> bool:
    """True for leap years (Gregorian: every 4th year, except centuries not divisible by 400)."""
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
