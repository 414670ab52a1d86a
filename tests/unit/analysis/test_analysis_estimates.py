"""Estimates (value + interval) from a row's runs, and the rule that marks a best only when told apart."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.estimates import Estimate, accuracy_estimate, average_estimate, loss_estimate, mark_best
from analysis.table_format import Cell


def _runs(**cols) -> pd.DataFrame:
    return pd.DataFrame(cols)


def test_one_run_accuracy_carries_its_wilson_interval():
    e = accuracy_estimate(_runs(**{"acc/boolq": [50.0], "eval/n/boolq": [16]}), "acc/boolq")
    assert e.kind == "ci" and e.text(1) == "50.0 [28.0, 72.0]"
    assert e.errorbar() == pytest.approx((22.0, 22.0), abs=0.01)


def test_seeds_give_mean_and_sample_std():
    e = accuracy_estimate(_runs(**{"acc/boolq": [60.0, 62.0], "eval/n/boolq": [16, 16]}), "acc/boolq")
    assert e.kind == "std" and e.runs == 2 and e.text(1) == "61.0 ± 1.4"


def test_without_an_item_count_there_is_no_interval():
    e = accuracy_estimate(_runs(**{"acc/boolq": [50.0]}), "acc/boolq")
    assert e.interval is None and e.text(1) == "50.0"
    assert accuracy_estimate(_runs(**{"acc/boolq": [None]}), "acc/boolq") is None


def test_one_run_average_uses_the_normal_approximation_of_a_mean_of_proportions():
    runs = _runs(**{"acc/boolq": [50.0], "acc/piqa": [80.0], "acc/avg": [65.0], "eval/n/boolq": [16],
                    "eval/n/piqa": [100]})
    e = average_estimate(runs)
    assert (e.lo, e.hi) == pytest.approx((65.0 - 11.679, 65.0 + 11.679), abs=0.001)


def test_one_run_heldout_loss_is_plus_minus_1_96_standard_errors():
    e = loss_estimate(_runs(**{"loss/heldout": [2.0], "loss/heldout_se": [0.05]}))
    assert e.text(3) == "2.000 [1.902, 2.098]"
    assert loss_estimate(_runs(**{"loss/heldout": [2.0, 2.2], "loss/heldout_se": [0.05, 0.05]})).text(2) == \
        "2.10 ± 0.14"


def _marks(estimates, higher_is_better=True):
    cells = [Cell("") for _ in estimates]
    result = mark_best(cells, estimates, higher_is_better)
    return result, [c.style for c in cells]


def _acc(percent: float, n: int) -> Estimate:
    return accuracy_estimate(_runs(**{"acc/x": [percent], "eval/n/x": [n]}), "acc/x")


def test_a_within_noise_best_is_not_bold():
    # 16 items each: 56.2% [33.2, 76.9] vs 50.0% [28.0, 72.0] overlap
    assert _marks([_acc(56.25, 16), _acc(50.0, 16), _acc(37.5, 16)]) == (False, [None, None, None])


def test_a_clearly_separated_best_is_bold_and_second_underlined():
    # 400 items: [75.8, 83.7], [45.1, 54.9], [16.4, 24.2] are disjoint
    assert _marks([_acc(50.0, 400), _acc(80.0, 400), _acc(20.0, 400), None]) == (True, ["second", "best", None, None])


def test_second_is_unmarked_when_it_does_not_clear_the_third():
    assert _marks([_acc(80.0, 400), _acc(50.0, 400), _acc(48.0, 400)]) == (True, ["best", None, None])
    # among two values only the best is ever marked
    assert _marks([_acc(80.0, 400), _acc(20.0, 400)]) == (True, ["best", None])


def test_ties_unknown_uncertainty_and_single_values_are_never_marked():
    assert _marks([_acc(80.0, 400), _acc(80.0, 400)])[0] is False
    assert _marks([Estimate(90.0), Estimate(10.0)])[0] is False  # no item count: nothing can be told apart
    assert _marks([_acc(80.0, 400), None]) == (None, [None, None])


def test_lower_is_better_for_loss():
    a = Estimate(1.2, 1.18, 1.22, "std", 3)
    b = Estimate(1.4, 1.38, 1.42, "std", 3)
    assert _marks([b, a], higher_is_better=False) == (True, [None, "best"])
