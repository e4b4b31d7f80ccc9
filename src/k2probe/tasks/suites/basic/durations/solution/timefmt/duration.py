import re

UNITS = {"h": 3600, "m": 60, "s": 1}
PART = re.compile(r"\s*(\d+)\s*([hms])\s*")


def parse_duration(text: str) -> int:
    """Seconds in a duration like '1h 30m 15s'; ValueError for an empty string or unknown units."""
    position, total, found = 0, 0, False
    while position < len(text):
        match = PART.match(text, position)
        if not match:
            raise ValueError(f"bad duration: {text!r}")
        total += int(match.group(1)) * UNITS[match.group(2)]
        position, found = match.end(), True
    if not found:
        raise ValueError(f"bad duration: {text!r}")
    return total
