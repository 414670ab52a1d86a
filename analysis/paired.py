"""The paired table: each method minus a reference method on the same seeds, with sign and t tests.

Runs that share a seed share their data order and initialization noise, so a per-seed difference
cancels what the two runs have in common and carries more power than comparing two means.
"""
from __future__ import annotations

import pandas as pd

from analysis.collect import Collection, groups, label
from analysis.columns import benchmark_columns, benchmark_name
from analysis.stats import mean_std, paired_t_p, sign_test_p
from analysis.table_format import MISSING, Table


def _metrics(runs: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(column, name, digits) of the compared quantities present: the average first, then held-out
    loss, then each benchmark."""
    cand = [("acc/avg", "Avg acc. (points)", 1), ("loss/heldout", "Held-out loss", 3)]
    cand += [(c, f"{benchmark_name(c[len('acc/'):])} (points)", 1) for c in benchmark_columns(runs, "acc/")]
    return [m for m in cand if m[0] in runs and runs[m[0]].notna().any()]


def _p(p: float | None) -> str:
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _reference_rows(block: pd.DataFrame, reference: str) -> tuple[pd.DataFrame, str]:
    """The reference method's runs in one (model, task) block: its default configuration, else its first."""
    ref = block[block["method"] == reference]
    if ref.empty:
        return ref, ""
    variant = "" if (ref["variant"] == "").any() else ref["variant"].iloc[0]
    return ref[ref["variant"] == variant], variant


def paired_table(coll: Collection, reference: str = "lisa") -> tuple[Table | None, str | None]:
    """Per (model, task), every other method (and configuration) minus ``reference``, seed by seed.

    Each row is one method and one quantity (average accuracy, held-out loss, each benchmark):
    the mean ± sample std of its per-seed differences, the number of pairs, the two-sided exact
    sign test p and the paired t-test p. Rows need at least two pairs.

    Returns:
        ``(table, None)``; or ``(None, why)`` where several seeds exist but nothing can be paired
        (the reference method is absent or shares fewer than two seeds); ``(None, None)`` when every
        configuration has a single run, as a one-seed experiment has nothing to pair.
    """
    runs = coll.runs
    if runs.groupby(["method", "model", "task", "variant"], dropna=False).size().max() < 2:
        return None, None
    if not (runs["method"] == reference).any():
        methods = ", ".join(dict.fromkeys(runs["method"].astype(str)))
        return None, (f"No paired table: no runs of the reference method '{reference}' (methods here: {methods}; "
                      "choose one with --reference).")
    metrics = _metrics(runs)
    multi_task = runs["task"].nunique() > 1
    rows, ref_names = [], set()
    for (model, task), block in runs.groupby(["model", "task"], sort=False):
        ref, ref_variant = _reference_rows(block, reference)
        if ref.empty:
            continue
        ref_names.add(label(reference, ref_variant))
        ref_by_seed = ref.groupby("seed")[[m[0] for m in metrics]].mean()
        for (method, _, _, variant), g in groups(block):
            if method == reference and variant == ref_variant:
                continue
            by_seed = g.groupby("seed")[[m[0] for m in metrics]].mean()
            for col, name, digits in metrics:
                diffs = (by_seed[col] - ref_by_seed[col]).dropna().astype(float).tolist()  # aligned by seed
                if len(diffs) < 2:
                    continue
                m, s = mean_std(diffs)
                rows.append([str(model)] + ([str(task)] if multi_task else [])
                            + [label(method, variant), name, f"{m:+.{digits}f} ± {s:.{digits}f}", str(len(diffs)),
                               _p(sign_test_p(diffs)), _p(paired_t_p(diffs))])
    if not rows:
        return None, (f"No paired table: no method shares two or more seeds with the reference '{reference}' "
                      "on the same model and task.")
    ref_name = " / ".join(sorted(ref_names))
    lead = ["Model"] + (["Task"] if multi_task else []) + ["Method", "Quantity"]
    notes = [f"Each method minus {ref_name} on the same seeds (same model and task): mean ± sample std of the "
             "per-seed differences over the pairs. Accuracy differences are in points (positive: better than "
             f"{reference}); held-out loss differences are negative where the method is better.",
             "Sign test: two-sided exact binomial on the signs of the differences (ties dropped; with k pairs "
             "p is at least 2/2^k). Paired t: two-sided one-sample t-test of the differences (– where undefined: "
             "the differences have no spread). p-values are per row, not corrected for the number of rows."]
    return Table("paired", f"Paired differences vs {reference} on {coll.experiment}",
                 lead + [f"Δ vs {reference}", "Pairs", "Sign test p", "Paired t p"], rows,
                 "l" * len(lead) + "rrrr", notes + [n for n in [coll.footnote()] if n]), None
