def missing_columns(header, required):
    return [name for name in required if name not in header]
