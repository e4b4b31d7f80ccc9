import pytest
from stats.central import median


def test_even():
    assert median([1, 2, 3, 4]) == 2.5


def test_input_untouched():
    data = [3, 1, 2]
    median(data)
    assert data == [3, 1, 2]


def test_empty():
    with pytest.raises(ValueError):
        median([])
