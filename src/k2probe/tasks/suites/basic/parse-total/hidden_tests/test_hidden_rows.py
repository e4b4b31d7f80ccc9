from decimal import Decimal

import pytest
from billing.rows import parse_total


def test_decimal_result():
    assert parse_total({"price": "0.10", "qty": "3"}) == Decimal("0.30")


@pytest.mark.parametrize("row,word", [({"qty": "1"}, "price"), ({"price": "1"}, "qty")])
def test_missing_column_is_named(row, word):
    with pytest.raises(ValueError, match=word):
        parse_total(row)


def test_bad_number():
    with pytest.raises(ValueError):
        parse_total({"price": "abc", "qty": "1"})


def test_negative_rejected():
    with pytest.raises(ValueError):
        parse_total({"price": "1", "qty": "-2"})
