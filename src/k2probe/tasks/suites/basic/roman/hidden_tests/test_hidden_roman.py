import pytest
from numerals.roman import to_roman


@pytest.mark.parametrize("number,text", [(4, "IV"), (9, "IX"), (40, "XL"), (1994, "MCMXCIV"), (3999, "MMMCMXCIX")])
def test_subtractive(number, text):
    assert to_roman(number) == text


@pytest.mark.parametrize("number", [0, 4000, -1])
def test_range(number):
    with pytest.raises(ValueError):
        to_roman(number)
