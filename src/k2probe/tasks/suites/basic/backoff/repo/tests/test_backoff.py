from net.backoff import backoff_delay


def test_grows():
    assert backoff_delay(3) > backoff_delay(2)
