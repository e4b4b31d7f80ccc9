from calendarx.leap import is_leap


def test_gregorian_rules():
    assert [y for y in (1600, 1700, 1800, 1900, 2000, 2004, 2100, 2400) if is_leap(y)] == [1600, 2000, 2004, 2400]
