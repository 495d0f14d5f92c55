"""The tests the measured results lean on, written out because none needs a statistics
package: an exact two-sided sign test for paired right/wrong outcomes (two runs on the same
problems), the Wilson interval for one accuracy, and a problem-clustered bootstrap interval for
an accuracy over pairs that come many to a problem."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from math import comb, sqrt


def sign_test(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[int, int, float]:
    """(won, lost, two-sided p) of `a` against `b` on the problems both ran. Outcomes are right /
    wrong, or a problem's share right over repeats: a problem is won where `a`'s is higher."""
    both = a.keys() & b.keys()
    won = sum(1 for i in both if a[i] > b[i])
    lost = sum(1 for i in both if b[i] > a[i])
    n = won + lost
    if not n:
        return won, lost, 1.0
    tail = sum(comb(n, k) for k in range(min(won, lost) + 1)) / 2**n
    return won, lost, min(1.0, 2 * tail)


def sign_test_fields(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, int | float]:
    """`sign_test` as a table row's fields: won, lost and p (to four places)."""
    won, lost, p = sign_test(a, b)
    return {"won": won, "lost": lost, "p": round(p, 4)}


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (by default) Wilson score interval of the proportion `successes / n`; (0, 1) if n=0.
    Unlike the normal approximation it stays inside [0, 1] and is sound at small n."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap_interval(
    outcomes: Sequence[float], clusters: Sequence[str], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of the mean of `outcomes` when they come in correlated groups
    (pairs of one problem): problems, not pairs, are resampled. (0, 1) if there are none."""
    groups: dict[str, list[float]] = {}
    for x, c in zip(outcomes, clusters, strict=True):
        groups.setdefault(c, []).append(x)
    if not groups:
        return 0.0, 1.0
    sums = [(sum(v), len(v)) for v in groups.values()]
    rng = random.Random(seed)
    means = []
    for _ in range(n_boot):
        draw = rng.choices(sums, k=len(sums))
        means.append(sum(s for s, _ in draw) / sum(n for _, n in draw))
    means.sort()
    return means[int(0.025 * n_boot)], means[min(n_boot - 1, int(0.975 * n_boot))]
