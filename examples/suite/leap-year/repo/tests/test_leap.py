from calendarx.leap import is_leap


def test_ordinary_years():
    assert is_leap(2024) and not is_leap(2023)


def test_centuries():
    assert not is_leap(1900)
