def backoff_delay(attempt, base=0.5, cap=30.0):
    return base * 2 ** (attempt + 1)
