"""The exact sign test and the Wilson interval behind the measured claims."""

import pytest

from evaluation.stats import sign_test, wilson_interval


def test_sign_test_exact_values():
    a = {f"q{i}": i < 10 for i in range(20)}
    b = {f"q{i}": 8 <= i < 10 for i in range(20)}
    won, lost, p = sign_test(a, b)
    assert (won, lost) == (8, 0) and p == pytest.approx(2 / 2**8)
    assert sign_test(a, a) == (0, 0, 1.0)
    # only the problems both ran count
    assert sign_test({"x": True, "y": True}, {"x": False})[:2] == (1, 0)
    # symmetric, and a 5/5 split is no evidence at all
    assert sign_test(b, a)[2] == p
    assert (
        sign_test({str(i): i < 5 for i in range(10)}, {str(i): i >= 5 for i in range(10)})[2] == 1
    )


def test_wilson_interval_known_values():
    # textbook value: 81 of 263 → (0.255, 0.366)
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-3) and hi == pytest.approx(0.3662, abs=1e-3)
    # stays inside [0, 1] where the normal approximation would not, and is never a point
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and 0.2 < hi < 0.35
    lo, hi = wilson_interval(10, 10)
    assert hi == 1 and 0.65 < lo < 0.8
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # narrower with more data around the same proportion
    assert wilson_interval(500, 1000)[1] - wilson_interval(500, 1000)[0] < (
        wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0]
    )
