import re
from collections import Counter

WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def word_count(text: str) -> dict[str, int]:
    """Case-insensitive word counts; punctuation around words ignored, inner apostrophes kept."""
    return dict(Counter(WORD.findall(text.lower())))
