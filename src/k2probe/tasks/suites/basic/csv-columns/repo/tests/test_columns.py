from csvcheck.columns import missing_columns


def test_exact_names():
    assert missing_columns(["id", "price"], ["price", "qty"]) == ["qty"]
