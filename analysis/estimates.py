"""A compared number with its uncertainty, built from one table row's runs, and the rule for marking a best.

One run: the value with its 95% interval (Wilson from the item count for an accuracy, the normal
approximation of a mean of proportions for the average, ±1.96 standard errors for held-out loss).
Two or more runs (seeds): mean ± sample std over them. Tables, plots and the best/second marks
all read the same :class:`Estimate`, so they can never disagree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.stats import Z95, intervals_overlap, mean_of_proportions_half_width, mean_std, wilson_interval
from analysis.table_format import Cell

# Accuracy prefix -> the prefix of its item counts (lm-eval records none: no interval for one run).
ITEM_COUNTS = {"acc/": "eval/n/"}


@dataclass(frozen=True)
class Estimate:
    """A value and its uncertainty interval.

    Attributes:
        value: the run's value, or the mean over the runs.
        lo, hi: the interval; None where no uncertainty is known (then no best is claimed).
        kind: ``"ci"`` (a 95% interval of one run), ``"std"`` (mean ± std over seeds) or ``"none"``.
        runs: how many runs the estimate comes from.
    """

    value: float
    lo: float | None = None
    hi: float | None = None
    kind: str = "none"
    runs: int = 1

    @property
    def interval(self) -> tuple[float, float] | None:
        """``(lo, hi)``, or None when the uncertainty is unknown."""
        return None if self.lo is None or self.hi is None else (self.lo, self.hi)

    def text(self, digits: int) -> str:
        """``48.4 [36.5, 60.5]`` for one run's 95% interval, ``61.0 ± 1.4`` for seeds, else the value."""
        v = f"{self.value:.{digits}f}"
        if self.kind == "ci" and self.interval:
            return f"{v} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"
        if self.kind == "std" and self.interval:
            return f"{v} ± {self.hi - self.value:.{digits}f}"
        return v

    def errorbar(self) -> tuple[float, float]:
        """Distances below and above the value (for matplotlib's ``yerr``); 0 where unknown."""
        return (self.value - self.lo, self.hi - self.value) if self.interval else (0.0, 0.0)


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _over_seeds(values: pd.Series) -> Estimate:
    m, s = mean_std(values.astype(float).tolist())
    return Estimate(m, m - s, m + s, "std", len(values))


def accuracy_estimate(rows: pd.DataFrame, col: str, prefix: str = "acc/") -> Estimate | None:
    """One benchmark's accuracy over a row's runs: Wilson interval for one run, mean ± std for seeds."""
    have = rows[rows[col].notna()] if col in rows else rows.iloc[:0]
    if have.empty:
        return None
    if len(have) > 1:
        return _over_seeds(have[col])
    p = float(have[col].iloc[0])
    n_col = ITEM_COUNTS[prefix] + col[len(prefix):] if prefix in ITEM_COUNTS else None
    n = have[n_col].iloc[0] if n_col in have else None
    if not _finite(n) or n <= 0:
        return Estimate(p)
    return Estimate(p, *wilson_interval(p, int(n)), kind="ci")


def average_estimate(rows: pd.DataFrame, prefix: str = "acc/") -> Estimate | None:
    """The average accuracy over benchmarks; one run's interval is the normal approximation of a mean
    of independent proportions, ``1.96 * sqrt(sum_b p_b (1 - p_b) / n_b) / B`` (Agresti-Coull adjusted
    ``p_b``: see :func:`~analysis.stats.mean_of_proportions_half_width`)."""
    col = f"{prefix}avg"
    have = rows[rows[col].notna()] if col in rows else rows.iloc[:0]
    if have.empty:
        return None
    if len(have) > 1:
        return _over_seeds(have[col])
    run = have.iloc[0]
    avg = float(run[col])
    benches = [c[len(prefix):] for c in have.columns
               if c.startswith(prefix) and c != col and _finite(run[c])]
    counts = [run.get(ITEM_COUNTS[prefix] + b) for b in benches] if prefix in ITEM_COUNTS else []
    if not benches or len(counts) != len(benches) or not all(_finite(n) and n > 0 for n in counts):
        return Estimate(avg)
    half = mean_of_proportions_half_width([float(run[prefix + b]) for b in benches], [int(n) for n in counts])
    return Estimate(avg, max(0.0, avg - half), min(100.0, avg + half), "ci")


def loss_estimate(rows: pd.DataFrame, col: str = "loss/heldout") -> Estimate | None:
    """Held-out loss over a row's runs: ±1.96 standard errors for one run, mean ± std for seeds."""
    have = rows[rows[col].notna()] if col in rows else rows.iloc[:0]
    if have.empty:
        return None
    if len(have) > 1:
        return _over_seeds(have[col])
    v = float(have[col].iloc[0])
    se = have[f"{col}_se"].iloc[0] if f"{col}_se" in have else None
    if not _finite(se):
        return Estimate(v)
    return Estimate(v, v - Z95 * float(se), v + Z95 * float(se), "ci")


def separated(a: Estimate, b: Estimate) -> bool:
    """Whether two estimates are told apart: both uncertainties known and the intervals disjoint."""
    return a.interval is not None and b.interval is not None and not intervals_overlap(a.interval, b.interval)


def mark_best(cells: list[Cell], estimates: list[Estimate | None], higher_is_better: bool = True) -> bool | None:
    """Bold the best cell and underline the second, only where the data can tell them apart.

    The rule: the best is bold only if its interval (one run: the 95% interval; seeds: mean ± std)
    does not overlap the runner-up's, and the second is underlined only if, in addition, its own
    interval does not overlap the third's (so among two values only a best is ever marked). A value
    whose uncertainty is unknown is never told apart, and exact ties never are.

    Returns:
        True if a best was marked, False if the best is within noise, None with fewer than two values.
    """
    ranked = sorted((i for i, e in enumerate(estimates) if e is not None),
                    key=lambda i: estimates[i].value, reverse=higher_is_better)
    if len(ranked) < 2:
        return None
    first, second = (estimates[i] for i in ranked[:2])
    if not separated(first, second):
        return False
    cells[ranked[0]].style = "best"
    if len(ranked) >= 3 and separated(second, estimates[ranked[2]]):
        cells[ranked[1]].style = "second"
    return True


def interval_note(kinds: set[str], what: str, one_run: str) -> str:
    """The sentence saying what a column's ``[lo, hi]`` and ``±`` mean, for the kinds it shows.

    Args:
        kinds: the :attr:`Estimate.kind` values present.
        what: the quantity, e.g. ``"Accuracy (%)"``.
        one_run: how one run's 95% interval is computed, e.g. ``"Wilson, from the item count"``.
    """
    parts = []
    if "ci" in kinds:
        parts.append(f"one run: value [95% interval; {one_run}; it covers the sampling of items, not the "
                     "variation between seeds]")
    if "std" in kinds:
        parts.append("n ≥ 2 runs (seeds): mean ± sample std")
    if "none" in kinds:
        parts.append("a bare value: no uncertainty recorded (never marked best)")
    return f"{what}; " + "; ".join(parts) + "." if parts else f"{what}."


BEST_RULE = ("Bold marks the best and underline the second only where its interval (or mean ± std) does not "
             "overlap the next one's.")
