from textstats.words import word_count


def test_punctuation_and_case():
    assert word_count("Hello, hello world!") == {"hello": 2, "world": 1}


def test_apostrophes_and_whitespace():
    assert word_count("Don't  stop.\nDON'T") == {"don't": 2, "stop": 1}
