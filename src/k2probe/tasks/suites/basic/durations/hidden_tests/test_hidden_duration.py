import pytest
from timefmt.duration import parse_duration


def test_spaces_and_seconds():
    assert parse_duration("1h 30m 15s") == 5415
    assert parse_duration("45s") == 45


@pytest.mark.parametrize("text", ["", "10x", "h"])
def test_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)
