from collections_extra.dedupe import dedupe


def test_removes_duplicates():
    assert sorted(dedupe([1, 1, 2])) == [1, 2]
