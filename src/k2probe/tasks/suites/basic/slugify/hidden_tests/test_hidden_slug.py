from text.slug import slugify


def test_accents_and_punctuation():
    assert slugify("Crème Brûlée -- Recipe!") == "creme-brulee-recipe"


def test_edges_are_stripped():
    assert slugify("  --Hello__World--  ") == "hello-world"


def test_empty():
    assert slugify("!!!") == ""
