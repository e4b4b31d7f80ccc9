import re


def parse_duration(text):
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", text)
    hours, minutes = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60
