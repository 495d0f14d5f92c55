"""The arithmetic a step's comment claims, checked (what keeps false reasoning out of training)."""

import pytest

from search.claims import claims, contradicts_answer, false_claims, stated_result


@pytest.mark.parametrize(
    "text",
    [
        "21 eggs x 2 weeks = 42 eggs",
        "200 shirts * 8 buttons/shirt = 1600 buttons",
        "The total is 3 + 7 * 6 = 3 + 42 = 45 stickers.",
        "So she made $40 - $65 = -$25",
        "1,200 + 300 = 1,500",
        "10 / 3 = 3.33 each",
        "-5 + 3 = -2",
        "30 more join -> Beth had 150 + 30 = 180 students",
    ],
)
def test_true_arithmetic_holds(text):
    found = claims(text)
    assert found and all(c.holds for c in found), found


@pytest.mark.parametrize(
    ("text", "actual"),
    [
        ("The number sold is 25 x 2 + 6 = 51", 56),
        ("She kept 400-100-50-80=140", 170),
        ("so she has $1570-70=$1490", 1500),
        ("3 + 4 = 7 and then 7 * 3 = 20", 21),
        ("10 / 3 = 3.4 each", 10 / 3),
    ],
)
def test_false_arithmetic_is_caught(text, actual):
    (bad,) = false_claims(text)
    assert bad.actual == pytest.approx(actual)


@pytest.mark.parametrize(
    "text",
    [
        "three eggs x 7 days per week = 21 eggs",  # number words are not read
        "20% of 50 = 10",  # nor percentages
        "x = 4",  # nor a single number
        "the answer is 12",  # nor text without "="
        "2 * (3 + 4) = 14",  # nor grouping
    ],
)
def test_what_it_cannot_read_it_leaves_alone(text):
    assert false_claims(text) == []


def test_a_final_comment_that_ends_on_another_number_contradicts_the_answer():
    assert stated_result("So she made $40 - $65 = -$25 in all") == -25
    assert contradicts_answer("So she made $40 - $65 = -$25", "25")
    assert not contradicts_answer("She made $65 - $40 = $25", "25")
    assert not contradicts_answer("The average is 10 / 3 = 3.33", "3.33")
    assert not contradicts_answer("Print the total", "25")  # nothing stated
    assert not contradicts_answer("total = 5 + 5 = 10", "\\frac{1}{2}")  # not a number


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("2 × 3 = 6", True),  # the typeset operators read as * and /
        ("2 × 3 = 7", False),
        ("12 ÷ 4 = 3", True),
        ("12 ÷ 4 = 4", False),
        ("6 / 1 = 6", True),
        ("3 * 1.5 = 4", False),  # a whole number is not a rounding of 4.5
        ("7 / 2 = 3.5", True),
        ("2 / 3 = 0.67", True),  # rounded to the places it shows
        ("2 / 3 = 0.6", False),
    ],
)
def test_each_claim_is_read_and_judged(text, holds):
    (claim,) = claims(text)
    assert claim.holds is holds


def test_a_division_by_zero_is_left_alone():
    assert claims("5 / 0 = 1") == [] and false_claims("5 / 0 = 0") == []


def test_every_claim_in_a_comment_is_checked_past_one_it_cannot_read():
    (bad,) = false_claims("x = 4, then 3 + 4 = 8")
    assert (bad.expression, bad.stated, bad.actual) == ("3+4", 8, 7)
    assert [c.expression for c in claims("a = 2, b = 3 + 4 = 7, c = 5 * 2 = 10")] == ["3+4", "5*2"]


def test_the_stated_result_is_the_last_one_in_a_chain():
    assert stated_result("total = 10 - 5 = 6") == 6
    assert stated_result("12 ÷ 4 = 3 × 1 = 3") == 3
