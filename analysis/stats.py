"""The statistics every compared number carries: intervals for one run, spreads over seeds, paired tests.

Pure functions on plain numbers (no pandas), so each can be checked against a hand computation.
Accuracies are percents (0-100), as ``result.json`` stores them.
"""
from __future__ import annotations

import math

from scipy import stats as _scipy

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson_interval(percent: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy measured on ``n`` items, in percent.

    Unlike the normal approximation it stays inside [0, 100] and keeps a width at 0% or 100%,
    which matters for the 16-item cells a CPU budget evaluates.

    Raises:
        ValueError: ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"an interval needs at least one item, got n={n}")
    p = percent / 100.0
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100.0 * max(0.0, center - half), 100.0 * min(1.0, center + half)


def mean_of_proportions_half_width(percents: list[float], ns: list[int], z: float = Z95) -> float:
    """Half-width (percent) of the normal-approximation interval of a mean of independent accuracies.

    The average over B benchmarks ``sum_b p_b / B`` has standard error ``sqrt(sum_b p_b(1-p_b)/n_b) / B``.
    Each ``p_b`` enters with the Agresti-Coull adjustment ``(k_b + z^2/2) / (n_b + z^2)`` over
    ``n_b + z^2`` items, so benchmarks at 0% or 100% still count as uncertain (the plain formula
    would give a model scoring 0/4 everywhere an interval of width 0).
    """
    if not percents or len(percents) != len(ns) or min(ns) <= 0:
        raise ValueError("one positive item count per accuracy is needed")
    var = 0.0
    for p, n in zip(percents, ns):
        n_adj = n + z * z
        p_adj = (p / 100.0 * n + z * z / 2) / n_adj
        var += p_adj * (1 - p_adj) / n_adj
    return 100.0 * z * math.sqrt(var) / len(percents)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); the std is NaN for a single value."""
    if not values:
        raise ValueError("no values")
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, math.nan
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error, ``std / sqrt(n)``; the se is NaN for a single value."""
    m, s = mean_std(values)
    return m, s / math.sqrt(len(values))


def sign_test_p(diffs: list[float]) -> float:
    """Two-sided exact sign test of "the median difference is 0"; zero differences are dropped.

    With ``k`` pairs the smallest possible p is ``2 / 2**k`` (0.25 for three seeds): a sign test
    over a handful of seeds can only ever be weak evidence.
    """
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return 1.0
    k = sum(d > 0 for d in nonzero)
    return float(_scipy.binomtest(k, len(nonzero), 0.5).pvalue)


def paired_t_p(diffs: list[float]) -> float | None:
    """Two-sided one-sample t-test p of the paired differences against 0.

    None where the test is undefined: fewer than two pairs, or differences without spread (then
    t is 0/0 or infinite and a p-value would claim more than the data holds). Spread at the level
    of float rounding (``1.25 - 1.30`` is not exactly ``-0.05``) counts as none.
    """
    if len(diffs) < 2:
        return None
    _, s = mean_std(diffs)
    if not s > 1e-9 * max(abs(d) for d in diffs):
        return None
    return float(_scipy.ttest_1samp(diffs, 0.0).pvalue)


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the closed intervals ``a`` and ``b`` share a point."""
    return a[0] <= b[1] and b[0] <= a[1]
