from billing.rows import parse_total


def test_simple_total():
    assert parse_total({"price": "2.50", "qty": "4"}) == 10
