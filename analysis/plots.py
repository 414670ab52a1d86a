"""Every figure of an experiment: built from a Collection, written as PNG + PDF.

Figures without data (no accuracy recorded, no layer-wise method, nothing varied) are skipped
rather than drawn empty. The plotting functions live in :mod:`analysis.plots_runs` and
:mod:`analysis.plots_layers`.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from analysis.collect import Collection, read_metrics
from analysis.plots_layers import plot_active_layers, plot_grass_importance
from analysis.plots_runs import (plot_accuracy_vs_memory, plot_heldout_loss, plot_loss_curves, plot_sensitivity,
                                 plot_throughput)
from analysis.plots_style import save_figure

# name -> one-line description, in report order.
FIGURES = {
    "accuracy_vs_memory": "Average accuracy against memory per method (bars: one run's 95% interval, or mean ± std "
                          "over seeds); the dashed line is the Pareto front.",
    "throughput": "Training throughput in tokens/s per method (mean ± std over seeds).",
    "loss_curves": "Training loss per method, mean over seeds with a min–max band.",
    "heldout_loss": "Held-out loss over training per method (band: ± std over seeds, or ± 1.96 standard errors).",
    "active_layers": "Which decoder layers LISA and GRASS trained at each step.",
    "grass_importance": "GRASS's per-layer MGN and sampling probabilities over training.",
    "sensitivity": "GRASS average accuracy against the hyper-parameters the experiment varies (same bars).",
}


def make_figures(coll: Collection) -> dict[str, Figure]:
    """Build every figure the experiment has data for, keyed by the names in :data:`FIGURES`."""
    runs = coll.runs
    metrics = {d: read_metrics(d) for d in runs["run_dir"]}
    built = {
        "accuracy_vs_memory": plot_accuracy_vs_memory(runs),
        "throughput": plot_throughput(runs),
        "loss_curves": plot_loss_curves(runs, metrics),
        "heldout_loss": plot_heldout_loss(runs, metrics),
        "active_layers": plot_active_layers(runs, metrics),
        "grass_importance": plot_grass_importance(runs, metrics),
        "sensitivity": plot_sensitivity(runs),
    }
    return {name: fig for name, fig in built.items() if fig is not None}


def write_plots(figures: dict[str, Figure], out_dir: str | Path) -> list[Path]:
    """Save each figure as ``<out_dir>/<name>.png`` and ``.pdf``; return the paths."""
    return [p for name, fig in figures.items() for p in save_figure(fig, out_dir, name)]
