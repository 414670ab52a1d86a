"""Every figure is written as a non-empty PNG and PDF; figures without data are skipped."""
from __future__ import annotations

from analysis.collect import FALLBACK_LABEL, collect
from analysis.plots import FIGURES, write_plots
from analysis.plots_runs import pareto_front, plot_sensitivity


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


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 60.0), (2.0, 65.0), (2.5, 64.0), (3.0, 70.0), (0.5, 50.0), (1.0, 55.0)]
    assert pareto_front(pts) == [4, 0, 1, 3]
