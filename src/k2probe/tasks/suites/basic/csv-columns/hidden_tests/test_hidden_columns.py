from csvcheck.columns import missing_columns


def test_case_and_spaces():
    assert missing_columns(["ID", "Price", " qty "], ["price", "qty", "id"]) == []


def test_sorted_output():
    assert missing_columns(["x"], ["zeta", "alpha"]) == ["alpha", "zeta"]
