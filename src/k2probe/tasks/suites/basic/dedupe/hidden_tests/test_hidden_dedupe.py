from collections_extra.dedupe import dedupe


def test_order_kept():
    assert dedupe([3, 1, 3, 2, 1]) == [3, 1, 2]


def test_key():
    assert dedupe(["a", "A", "b"], key=str.lower) == ["a", "b"]
