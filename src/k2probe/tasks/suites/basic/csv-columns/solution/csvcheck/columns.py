def missing_columns(header: list[str], required: list[str]) -> list[str]:
    """Required names absent from the header, compared case-insensitively without surrounding spaces; sorted."""
    present = {name.strip().lower() for name in header}
    return sorted(name for name in required if name.strip().lower() not in present)
