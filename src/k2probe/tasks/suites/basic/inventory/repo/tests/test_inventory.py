from shop.inventory import Inventory


def test_add_and_remove():
    inv = Inventory()
    inv.add("a", 3)
    inv.remove("a", 2)
    assert inv.stock["a"] == 1
