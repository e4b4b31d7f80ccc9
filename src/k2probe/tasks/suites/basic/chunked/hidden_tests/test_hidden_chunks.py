import pytest
from iterutil.chunks import chunked


def test_partial_last_chunk():
    assert chunked([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_any_iterable():
    assert chunked(range(3), 5) == [[0, 1, 2]]


def test_bad_size():
    with pytest.raises(ValueError):
        chunked([1], 0)
