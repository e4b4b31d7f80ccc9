import re
import unicodedata


def slugify(title: str) -> str:
    """ASCII slug: accents folded, punctuation dropped, one '-' between words."""
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    words = re.split(r"[^a-z0-9]+", folded.lower())
    return "-".join(word for word in words if word)
