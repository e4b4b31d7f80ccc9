"""One percentile method everywhere (linear interpolation, like numpy's default), always reported with n."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval (95% by default) for a rate of successes out of n; None for n = 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k), for n samples with c correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / float(2**n)
    return min(1.0, 2 * tail)


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p), summed in logs (exact enough for thousands of pairs)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
            + (n - i) * math.log1p(-p) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def clopper_pearson(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a binomial proportion: the dual of the exact two-sided binomial test
    that doubles the smaller tail, so it excludes p0 exactly when that test rejects p0 at `alpha`."""
    def solve(tail: Any, lo: float, hi: float) -> float:
        for _ in range(80):  # bisection: the tail is monotone in p
            mid = (lo + hi) / 2
            if tail(mid):
                hi = mid
            else:
                lo = mid
        return (lo + hi) / 2

    lower = 0.0 if successes == 0 else solve(lambda p: 1.0 - _binomial_cdf(successes - 1, n, p) > alpha / 2, 0, 1)
    upper = 1.0 if successes == n else solve(lambda p: _binomial_cdf(successes, n, p) < alpha / 2, 0, 1)
    return lower, upper


def mcnemar_exact_difference(b: int, c: int, n: int, alpha: float = 0.05) -> tuple[float, float, float] | None:
    """The paired difference of two proportions (second minus first: (c - b) / n) with the interval that agrees with
    the exact McNemar test: Clopper–Pearson for the share c / (b + c) of discordant pairs won by the second, mapped
    onto the difference given the b + c discordant pairs. It contains 0 exactly when `mcnemar_p(b, c)` ≥ alpha."""
    if n <= 0:
        return None
    discordant = b + c
    diff = (c - b) / n
    if discordant == 0:
        return diff, 0.0, 0.0
    low, high = clopper_pearson(c, discordant, alpha)
    scale = discordant / n
    return diff, scale * (2 * low - 1), scale * (2 * high - 1)


def paired_rate_difference(b: int, c: int, n: int, z: float = 1.96) -> tuple[float, float, float] | None:
    """Difference of two paired proportions (second minus first) with its 95% Wald interval; b = pairs only the first
    got right, c = pairs only the second got right, n = all pairs. None for n = 0."""
    if n <= 0:
        return None
    diff = (c - b) / n
    spread = z * math.sqrt(max(0.0, (b + c) - (c - b) ** 2 / n)) / n
    return diff, max(-1.0, diff - spread), min(1.0, diff + spread)


def bootstrap_mean_difference(diffs: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float, float] | None:
    """Mean of paired differences with a 95% percentile-bootstrap interval (seeded: the same data, the same figures)."""
    import random

    if not diffs:
        return None
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return sum(diffs) / n, means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]
