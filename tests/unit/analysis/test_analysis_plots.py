"""Every figure is written as a non-empty PNG and PDF; figures without data are skipped; accuracy and
held-out loss carry the tables' intervals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.collect import FALLBACK_LABEL, collect, read_metrics
from analysis.plots import FIGURES, write_plots
from analysis.plots_layers import plot_active_layers
from analysis.plots_runs import pareto_front, plot_accuracy_vs_memory, plot_heldout_loss, plot_sensitivity


def test_every_figure_is_written_as_png_and_pdf(golden_figures, tmp_path):
    figures = golden_figures
    # golden has no grid over a GRASS hyper-parameter, so no sensitivity figure
    assert list(figures) == [name for name in FIGURES if name != "sensitivity"]
    paths = write_plots(figures, tmp_path)
    assert len(paths) == 2 * len(figures)
    for p in paths:
        head = p.read_bytes()[:8]
        assert p.stat().st_size > 1000
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")


def test_cpu_runs_fall_back_to_byte_accounting_on_the_memory_axis(golden_figures):
    ax = golden_figures["accuracy_vs_memory"].axes[0]
    assert ax.get_xlabel() == FALLBACK_LABEL == "weights + grads + optimizer state (GiB; CPU: no peak)"
    assert ax.get_ylabel() == "average accuracy (%)"


def test_sensitivity_only_when_a_hyper_parameter_varies(tmp_path, write_run):
    for gamma in (1, 2, 4):
        write_run(tmp_path, "sens", "grass", 0, {"boolq": 50.0 + gamma}, method_cfg={"n_active_layers": gamma},
                  steps=10)
    write_run(tmp_path, "sens", "full", 0, steps=10)  # no accuracy, no layers
    runs = collect("sens", tmp_path).runs
    fig = plot_sensitivity(runs)
    assert fig.axes[0].get_xlabel() == "active layers per step γ"
    assert plot_sensitivity(runs[runs["method"] == "full"]) is None


def test_sensitivity_survives_a_partial_grid():
    # gamma's and T's most common values (2 and 20) never ran together: the lines they anchor are empty
    rows = [{"method": "grass", "model": "m", "task": "math", "variant": "", "seed": 0, "acc/avg": 10.0 + g,
             "cfg.method.n_active_layers": g, "cfg.method.switch_every": t, "cfg.method.temperature": tau}
            for g, t, tau in [(2, 10, 1.0), (2, 10, 2.0), (2, 40, 0.5), (4, 20, 1.0), (8, 20, 1.0), (8, 20, 2.0)]]
    fig = plot_sensitivity(pd.DataFrame(rows))
    assert len([ax for ax in fig.axes if ax.get_xlabel()]) == 3


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 60.0), (2.0, 65.0), (2.5, 64.0), (3.0, 70.0), (0.5, 50.0), (1.0, 55.0)]
    assert pareto_front(pts) == [4, 0, 1, 3]


def _one_seed_runs(root, write_run):
    # full: 9/16 and 8/16 items right, held-out loss 1.6 with se 0.04; lisa: 6/16 and 5/16
    write_run(root, "one", "full", 0, {"boolq": 56.25, "piqa": 50.0}, n_items=16, steps=40, heldout=(1.6, 0.04))
    write_run(root, "one", "lisa", 0, {"boolq": 37.5, "piqa": 31.25}, n_items=16, steps=40, heldout=(1.9, 0.04))
    return collect("one", root).runs


def test_accuracy_bars_are_the_tables_intervals(tmp_path, write_run):
    runs = _one_seed_runs(tmp_path, write_run)
    ax = plot_accuracy_vs_memory(runs).axes[0]
    bars = sorted(tuple(np.round(c.lines[2][0].get_segments()[0][:, 1], 1)) for c in ax.containers)
    # the accuracy table's Avg cells: 34.4 [19.3, 49.4] and 53.1 [37.6, 68.6]
    assert bars == [(19.3, 49.4), (37.6, 68.6)]


def test_heldout_loss_plot_draws_one_runs_band_of_1_96_standard_errors(tmp_path, write_run):
    runs = _one_seed_runs(tmp_path, write_run)
    fig = plot_heldout_loss(runs, {d: read_metrics(d) for d in runs["run_dir"]})
    ax = fig.axes[0]
    assert ax.get_ylabel() == "held-out loss (token mean, response tokens)"
    full = next(c.lines[0] for c in ax.containers if c.get_label() == "full")
    assert list(full.get_xdata()) == [19, 39]  # logged after step 19, then the final value after step 39
    assert full.get_ydata()[-1] == pytest.approx(1.6)
    band = ax.collections[0].get_paths()[0].vertices
    at_end = np.unique(np.round(band[np.isclose(band[:, 0], 39), 1], 6))  # the closed path repeats a vertex
    assert sorted(at_end) == pytest.approx([1.6 - 1.96 * 0.04, 1.6 + 1.96 * 0.04], abs=1e-3)


def test_no_heldout_loss_no_figure(tmp_path, write_run):
    write_run(tmp_path, "plain", "full", 0, {"boolq": 50.0}, steps=5)
    runs = collect("plain", tmp_path).runs
    assert plot_heldout_loss(runs, {d: read_metrics(d) for d in runs["run_dir"]}) is None


def test_heldout_loss_measured_only_at_the_end_gets_error_bars(tmp_path, write_run):
    runs = _one_seed_runs(tmp_path, write_run)
    metrics = {d: read_metrics(d).drop(columns=["loss/heldout", "loss/heldout_se"]) for d in runs["run_dir"]}
    ax = plot_heldout_loss(runs, metrics).axes[0]
    bars = sorted(tuple(np.round(c.lines[2][0].get_segments()[0][:, 1], 3)) for c in ax.containers)
    assert bars == [(round(1.6 - 1.96 * 0.04, 3), round(1.6 + 1.96 * 0.04, 3)),
                    (round(1.9 - 1.96 * 0.04, 3), round(1.9 + 1.96 * 0.04, 3))]


def test_each_task_gets_its_own_panels(tmp_path, write_run):
    # Losses and accuracies of two tasks are on different scales: never one panel, two same-colour lines.
    for task, loss in (("math", 0.45), ("commonsense", 0.15)):
        for method in ("lisa", "grass"):
            write_run(tmp_path, "two", method, 0, {"boolq": 50.0}, task=task, heldout=(loss, 0.01))
    runs = collect("two", tmp_path).runs
    metrics = {d: read_metrics(d) for d in runs["run_dir"]}
    for fig in (plot_heldout_loss(runs, metrics), plot_accuracy_vs_memory(runs)):
        axes = [ax for ax in fig.axes if ax.get_title()]
        assert sorted(ax.get_title() for ax in axes) == ["tiny-llama, commonsense", "tiny-llama, math"]
        for ax in axes:
            assert sorted(c.get_label() for c in ax.containers) == ["grass", "lisa"]
    write_run(tmp_path, "two", "lisa", 3, {"boolq": 50.0}, task="math", heldout=(0.45, 0.01))
    runs = collect("two", tmp_path).runs.sort_values("seed", ascending=False)  # seed 0 is still the one shown
    metrics = {d: read_metrics(d) for d in runs["run_dir"]}
    titles = sorted(ax.get_title() for ax in plot_active_layers(runs, metrics).axes if ax.get_title())
    assert titles == ["tiny-llama, commonsense, grass, seed 0", "tiny-llama, commonsense, lisa, seed 0",
                      "tiny-llama, math, grass, seed 0", "tiny-llama, math, lisa, seed 0"]
    ax = next(ax for ax in plot_heldout_loss(runs, metrics).axes if ax.get_title() == "tiny-llama, commonsense")
    assert all(c.lines[0].get_ydata()[-1] == pytest.approx(0.15) for c in ax.containers)  # not math's 0.45
