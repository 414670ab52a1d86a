"""The statistics against hand-computed values (z = 1.96 throughout, as the tables use)."""
from __future__ import annotations

import math

import pytest

from analysis.stats import (intervals_overlap, mean_of_proportions_half_width, mean_se, mean_std, paired_t_p,
                            sign_test_p, wilson_interval)


def test_wilson_interval_matches_the_hand_computation():
    # 8/16: center (0.5 + 1.96^2/32) / (1 + 1.96^2/16) = 0.5; half 1.96 sqrt(1/64 + 1.96^2/1024) / 1.2401 = 0.2200
    lo, hi = wilson_interval(50.0, 16)
    assert lo == pytest.approx(28.00, abs=0.01) and hi == pytest.approx(72.00, abs=0.01)
    # 0/10 keeps a width (the normal approximation would give [0, 0]): upper 2 * 0.19208 / 1.38415 = 0.27754
    assert wilson_interval(0.0, 10) == pytest.approx((0.0, 27.75), abs=0.01)
    assert wilson_interval(100.0, 10) == pytest.approx((72.25, 100.0), abs=0.01)
    # it narrows as sqrt(n): 400 items at 50% give about +-4.9 points
    assert wilson_interval(50.0, 400) == pytest.approx((45.12, 54.88), abs=0.01)
    with pytest.raises(ValueError):
        wilson_interval(50.0, 0)


def test_mean_of_proportions_half_width():
    # Agresti-Coull: 8/16 -> p 9.921 / 19.842 = 0.5 over 19.842 items; 80/100 -> 81.921 / 103.842 = 0.78890
    # sqrt(0.25 / 19.842 + 0.78890 * 0.21110 / 103.842) / 2 = 0.059582; x 1.96 = 11.68 points
    assert mean_of_proportions_half_width([50.0, 80.0], [16, 100]) == pytest.approx(11.678, abs=0.002)
    # 0/4 on four benchmarks keeps a width: p 1.921 / 7.842 = 0.24497, 1.96 sqrt(4 * 0.24497 * 0.75503 / 7.842) / 4
    assert mean_of_proportions_half_width([0.0] * 4, [4] * 4) == pytest.approx(15.05, abs=0.01)


def test_mean_std_and_standard_error():
    m, s = mean_std([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and s == pytest.approx(math.sqrt(5 / 3))  # sample std: sum of squares 5 over n - 1 = 3
    m, se = mean_se([1.0, 2.0, 3.0, 4.0])
    assert se == pytest.approx(math.sqrt(5 / 3) / 2)
    assert math.isnan(mean_std([7.0])[1]) and math.isnan(mean_se([7.0])[1])


def test_sign_test_is_the_exact_two_sided_binomial():
    assert sign_test_p([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)  # all five positive
    assert sign_test_p([1, 2, 3, -1, 0]) == pytest.approx(2 * (1 + 4) / 16)  # the tie dropped: 3 of 4
    assert sign_test_p([-2, -1]) == pytest.approx(0.5)
    assert sign_test_p([0, 0]) == 1.0 and sign_test_p([]) == 1.0


def test_paired_t_test_against_the_closed_form_t_cdf():
    diffs = [2.0, 3.0, 1.0, 4.0, 2.0]
    t = 2.4 / (math.sqrt(1.3) / math.sqrt(5))  # mean 2.4, sample var 5.2 / 4
    # the t CDF with 4 degrees of freedom in closed form
    u = t / math.sqrt(4 + t * t)
    cdf = 0.5 + 0.75 * u * (1 - u * u / 3)
    assert paired_t_p(diffs) == pytest.approx(2 * (1 - cdf), rel=1e-9)
    # 2 degrees of freedom: F(t) = 1/2 + t / (2 sqrt(2 + t^2)); diffs 1, 2, 3: t = 2 / (1 / sqrt 3)
    t = 2 * math.sqrt(3)
    assert paired_t_p([1.0, 2.0, 3.0]) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)


def test_paired_t_is_undefined_without_two_pairs_or_spread():
    assert paired_t_p([1.0]) is None
    assert paired_t_p([2.0, 2.0, 2.0]) is None
    assert paired_t_p([0.0, 0.0]) is None


def test_intervals_overlap():
    assert intervals_overlap((1, 3), (2, 4)) and intervals_overlap((1, 2), (2, 3))  # touching counts
    assert not intervals_overlap((1, 2), (2.5, 3)) and not intervals_overlap((5, 6), (1, 4))


def test_float_rounding_is_not_spread():
    diffs = [(1.30 - 0.05) - 1.30, (1.29 - 0.05) - 1.29, (0.3 - 0.05) - 0.3]
    assert len(set(diffs)) > 1  # rounding made them differ in the last bits
    assert paired_t_p(diffs) is None
