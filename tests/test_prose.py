"""gensar_lib.prose: sentences that follow the numbers in either direction."""
from __future__ import annotations

import doctest

import pytest

from gensar_lib import prose


def test_docstring_examples():
    assert doctest.testmod(prose).failed == 0


@pytest.mark.parametrize("a, b, word", [(0.2, 0.1, "higher than"), (0.1, 0.2, "lower than"), (0.1, 0.1, "level with")])
def test_compare_follows_the_values(a, b, word):
    assert prose.compare("A", a, "B", b) == f"A is {word} B ({a} against {b})."


def test_compare_tolerance_and_words():
    assert "level with" in prose.compare("A", 0.105, "B", 0.1, tolerance=0.01)
    assert "higher than" in prose.compare("A", 0.105, "B", 0.1, tolerance=0.001)
    text = prose.compare("the shared levels", 40, "the specific ones", 90, verb="use", more="more codes than",
                         less="fewer codes than")
    assert text == "the shared levels use fewer codes than the specific ones (40 against 90)."


def test_holds_both_ways():
    assert prose.holds("x", True) == "'x' holds here."
    assert prose.holds("x", False, because="y") == "'x' does NOT hold here: y."


def test_trend_direction_and_size():
    assert prose.trend("n", [1, 2, 8]).startswith("n grows from 1 to 8 over 3 steps (x8 in all; the largest "
                                                  "step is step 3, x4)")
    assert prose.trend("n", [8, 4, 1], plural=True).startswith("n fall from 8 to 1")
    assert prose.trend("n", [1, 3, 2]).startswith("n moves from 1 to 2")
    assert "in all" not in prose.trend("n", [0, 1])
    with pytest.raises(ValueError, match="at least two"):
        prose.trend("n", [1])


def test_numbers_never_in_exponent_form():
    assert prose.compare("A", 12345.678, "B", 0.000123, digits=3) == "A is higher than B (12346 against 0.000123)."
    assert "e+" not in prose.trend("n", [1.5, 2500.25])


def test_compare_without_a_verb():
    assert prose.compare("A", 2, "B", 1, verb="", more="above") == "A above B (2 against 1)."
