"""The two tests the measured results lean on, written out because neither needs a statistics
package: an exact two-sided sign test for paired right/wrong outcomes (two runs on the same
problems) and the Wilson interval for one accuracy."""

from __future__ import annotations

from math import comb, sqrt


def sign_test(a: dict[str, bool], b: dict[str, bool]) -> tuple[int, int, float]:
    """(won, lost, two-sided p) of `a` against `b` on the problems both ran."""
    both = a.keys() & b.keys()
    won = sum(1 for i in both if a[i] and not b[i])
    lost = sum(1 for i in both if b[i] and not a[i])
    n = won + lost
    if not n:
        return won, lost, 1.0
    tail = sum(comb(n, k) for k in range(min(won, lost) + 1)) / 2**n
    return won, lost, min(1.0, 2 * tail)


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (by default) Wilson score interval of the proportion `successes / n`; (0, 1) if n=0.
    Unlike the normal approximation it stays inside [0, 1] and is sound at small n."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
