from net.backoff import backoff_delay


def test_first_attempt_is_base():
    assert backoff_delay(0, base=0.5) == 0.5


def test_cap():
    assert backoff_delay(20, base=1.0, cap=8.0) == 8.0
