import pytest
from shop.inventory import Inventory


def test_overdraw_raises_and_keeps_stock():
    inv = Inventory()
    inv.add("a", 1)
    with pytest.raises(ValueError):
        inv.remove("a", 2)
    assert inv.stock["a"] == 1


def test_non_positive():
    inv = Inventory()
    inv.add("a", 1)
    with pytest.raises(ValueError):
        inv.remove("a", 0)
