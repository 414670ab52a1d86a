"""Figures that compare runs: accuracy vs memory (Pareto), throughput, loss curves, held-out loss, sensitivity.

Each function takes the included runs (and, where needed, their metrics) and returns a
:class:`~matplotlib.figure.Figure`, or None when the experiment has no data for it. Accuracy and
held-out loss carry the same uncertainty as the tables (:mod:`analysis.estimates`): one run's 95%
interval, or mean ± std over seeds.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from analysis.collect import groups, label, memory_gib
from analysis.estimates import average_estimate
from analysis.plots_style import LINESTYLES, MARKERS, method_color, shared_legend, subplots
from analysis.stats import Z95

# GRASS hyper-parameters a sensitivity grid may vary -> axis label.
SENSITIVITY = {
    "cfg.method.n_active_layers": "active layers per step γ",
    "cfg.method.switch_every": "switching period T_s (steps)",
    "cfg.method.temperature": "sampling temperature τ",
}


def _variant_styles(runs: pd.DataFrame) -> dict[tuple, int]:
    """Index of each (method, variant) among its method's variants, for marker / line style."""
    seen: dict[str, list] = {}
    for m, v in runs[["method", "variant"]].drop_duplicates().itertuples(index=False):
        seen.setdefault(m, []).append(v)
    return {(m, v): i for m, vs in seen.items() for i, v in enumerate(vs)}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both less memory (x) and higher accuracy (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def panels(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(title, runs)`` per model, and per task where the runs span several: one task's losses and
    accuracies are on another scale than the other's, so they never share a panel."""
    if runs["task"].nunique() < 2:
        return [(str(model), g) for model, g in runs.groupby("model", sort=False)]
    return [(f"{model}, {task}", g) for (model, task), g in runs.groupby(["model", "task"], sort=False)]


def plot_accuracy_vs_memory(runs: pd.DataFrame) -> Figure | None:
    """Average accuracy against memory per method, one panel per model (and task), Pareto front dashed."""
    if "acc/avg" not in runs or runs["acc/avg"].isna().all():
        return None
    runs = runs[runs["acc/avg"].notna()]
    mem, mem_label = memory_gib(runs)
    runs = runs.assign(_mem=mem)
    style = _variant_styles(runs)
    per_panel = panels(runs)
    fig, axes = subplots(len(per_panel), width=6.0, height=4.2)
    for ax, (title, sub) in zip(axes, per_panel):
        pts = []
        for (method, _, _, variant), g in groups(sub):
            est = average_estimate(g)
            x, y = g["_mem"].mean(), est.value
            ax.errorbar(x, y, yerr=[[e] for e in est.errorbar()], fmt=MARKERS[style[(method, variant)] % len(MARKERS)],
                        ms=8, capsize=3, color=method_color(method), label=label(method, variant))
            pts.append((x, y))
        front = pareto_front(pts)
        if len(pts) > 1:
            fx, fy = zip(*(pts[i] for i in front))
            ax.plot(fx, fy, "--", color="black", lw=1, drawstyle="steps-post", zorder=0)
            ax.scatter(fx, fy, s=260, facecolors="none", edgecolors="black", lw=1.2, zorder=3,
                       label="Pareto front: no other point has less memory and more accuracy")
        ax.set_title(title)
        ax.set_xlabel(mem_label)
        ax.set_ylabel("average accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy vs memory\nbars: one run's 95% interval, or mean ± std over seeds")
    shared_legend(fig, axes, ncols=3)
    return fig


def plot_throughput(runs: pd.DataFrame) -> Figure | None:
    """Training throughput (tokens/s, mean ± std over seeds) per method, one panel per model (and task)."""
    if "speed/tokens_per_s" not in runs or runs["speed/tokens_per_s"].isna().all():
        return None
    runs = runs[runs["speed/tokens_per_s"].notna()]
    per_panel = panels(runs)
    n_bars = max(len(list(groups(sub))) for _, sub in per_panel)
    # Horizontal bars: configuration names can be long and stay readable on the y axis.
    fig, axes = subplots(len(per_panel), width=6.5, height=1.0 + 0.4 * n_bars, ncols_max=2)
    for ax, (title, sub) in zip(axes, per_panel):
        full = sub.loc[(sub["method"] == "full") & (sub["variant"] == ""), "speed/tokens_per_s"].mean()
        names = []
        for i, ((method, _, _, variant), g) in enumerate(groups(sub)):
            v = g["speed/tokens_per_s"].astype(float)
            ax.barh(i, v.mean(), xerr=v.std(ddof=1) if len(v) > 1 else 0, capsize=3, color=method_color(method))
            if pd.notna(full) and full > 0:  # the ratio a reader wants: how much faster than full FT
                end = v.mean() + (v.std(ddof=1) if len(v) > 1 else 0)  # right of the error bar
                ax.annotate(f"{v.mean() / full:.2f}× full", (end, i), xytext=(6, 0), textcoords="offset points",
                            va="center", fontsize=8)
            names.append(label(method, variant))
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()  # display order top to bottom
        ax.set_xlabel("throughput (tokens/s)")
        ax.set_title(title)
        ax.margins(x=0.2)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Training throughput (mean ± std over seeds)")
    return fig


def plot_loss_curves(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame]) -> Figure | None:
    """Training loss per method (mean over seeds, band = min..max), one panel per model (and task).

    The per-step loss is smoothed by a rolling mean over ~2% of the steps, stated on the axis.
    """
    have = runs[runs["run_dir"].map(lambda d: "loss" in metrics.get(d, pd.DataFrame()))]
    if have.empty:
        return None
    style = _variant_styles(have)
    per_panel = panels(have)
    fig, axes = subplots(len(per_panel), width=6.0)
    for ax, (title, sub) in zip(axes, per_panel):
        n_steps = max(metrics[d]["step"].max() + 1 for d in sub["run_dir"])
        window = max(1, int(n_steps) // 50)
        for (method, _, _, variant), g in groups(sub):
            # rows without a training loss (e.g. an evaluation-only row) are not points of the curve
            curves = pd.concat({d: metrics[d].dropna(subset=["loss"]).set_index("step")["loss"]
                                .rolling(window, min_periods=1).mean() for d in g["run_dir"]}, axis=1)
            color = method_color(method)
            ax.plot(curves.index, curves.mean(axis=1), color=color,
                    ls=LINESTYLES[style[(method, variant)] % len(LINESTYLES)], label=label(method, variant))
            if len(g) > 1:
                ax.fill_between(curves.index, curves.min(axis=1), curves.max(axis=1), color=color, alpha=0.2, lw=0)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss" + (f" (rolling mean, {window} steps)" if window > 1 else ""))
        ax.grid(alpha=0.3)
    fig.suptitle("Training loss (mean over seeds; band: min–max over seeds)")
    shared_legend(fig, axes, ncols=3)
    return fig


def heldout_series(run: pd.Series, m: pd.DataFrame) -> pd.DataFrame:
    """One run's held-out loss (and standard error) by step: the logged rows, then the final value."""
    cols = ["loss/heldout", "loss/heldout_se"]
    rows = m.dropna(subset=["loss/heldout"]).reindex(columns=["step"] + cols) if "loss/heldout" in m else \
        pd.DataFrame(columns=["step"] + cols)
    steps = run.get("train/steps", run.get("cfg.train.max_steps"))
    if pd.notna(run.get("loss/heldout")) and pd.notna(steps):
        final = pd.DataFrame([{"step": int(steps) - 1, **{c: run.get(c) for c in cols}}])
        rows = pd.concat([rows, final]) if not rows.empty else final
    return rows.drop_duplicates("step", keep="last").set_index("step").astype(float).sort_index()


def plot_heldout_loss(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame]) -> Figure | None:
    """Held-out loss over training per method, one panel per model (and task).

    Several seeds: the mean with a band of ± std over seeds; one run: its value with a band of
    ± 1.96 standard errors over the held-out examples. A loss measured only at the end is one
    point per method, with an error bar of the same width.
    """
    series = {d: heldout_series(r, metrics.get(d, pd.DataFrame()))
              for d, r in runs.set_index("run_dir").iterrows()}
    have = runs[runs["run_dir"].map(lambda d: not series[d].empty)]
    if have.empty:
        return None
    style = _variant_styles(have)
    per_panel = panels(have)
    fig, axes = subplots(len(per_panel), width=6.0)
    for ax, (title, sel) in zip(axes, per_panel):
        steps = sorted({s for d in sel["run_dir"] for s in series[d].index})
        grouped = list(groups(sel))
        # Losses measured only at one (the same) step: side by side around it, not on one vertical line.
        spread = 0.6 / max(1, len(grouped) - 1) if len(steps) == 1 else 0.0
        for i, ((method, _, _, variant), g) in enumerate(grouped):
            curves = pd.concat({d: series[d]["loss/heldout"] for d in g["run_dir"]}, axis=1)
            color = method_color(method)
            mean = curves.mean(axis=1)
            if len(g) > 1:
                half = curves.std(axis=1, ddof=1).fillna(0.0)
            else:
                half = Z95 * series[g["run_dir"].iloc[0]]["loss/heldout_se"].fillna(0.0)
            # A band needs two steps; a loss measured only at the end gets an error bar instead.
            offset = spread * (i - (len(grouped) - 1) / 2)
            ax.errorbar(mean.index + offset, mean, yerr=half if len(mean) == 1 else None, capsize=4, color=color,
                        marker=".", ls=LINESTYLES[style[(method, variant)] % len(LINESTYLES)],
                        label=label(method, variant) + (f" ({len(g)} seeds)" if len(g) > 1 else ""))
            if len(mean) > 1:
                ax.fill_between(mean.index, mean - half, mean + half, color=color, alpha=0.2, lw=0)
        if len(steps) == 1:
            ax.set_xticks(steps)
            ax.set_xlim(steps[0] - 1, steps[0] + 1)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("held-out loss (token mean, response tokens)")
        ax.grid(alpha=0.3)
    fig.suptitle("Held-out loss (lower is better)\nband or bar: ± std over seeds, or ± 1.96 standard errors for one run")
    shared_legend(fig, axes, ncols=3)
    return fig


def plot_sensitivity(runs: pd.DataFrame) -> Figure | None:
    """GRASS average accuracy against each hyper-parameter that varies among its runs.

    One panel per varied parameter (γ, T_s, τ) and one line per model (and task). The other varied
    parameters are held at their most common value (the base of a one-at-a-time ablation), so
    a line never mixes settings; LISA's mean accuracy on the same model and task is drawn for reference.
    """
    grass = runs[(runs["method"] == "grass") & runs.get("acc/avg", pd.Series(index=runs.index)).notna()]
    params = [p for p in SENSITIVITY if p in grass and grass[p].dropna().nunique() > 1]
    if not params:
        return None
    fig, axes = subplots(len(params), width=5.0)
    for ax, p in zip(axes, params):
        for i, (name, g) in enumerate(panels(grass)):
            same = (runs["model"] == g["model"].iloc[0]) & (runs["task"] == g["task"].iloc[0])
            base = {q: g[q].mode().iloc[0] for q in params if q != p and g[q].notna().any()}
            for q, v in base.items():
                g = g[g[q] == v]
            ests = {x: average_estimate(at) for x, at in g.groupby(p)}
            xs = sorted(ests)
            fixed = "".join(f", {q.rsplit('.', 1)[-1]}={v:g}" for q, v in base.items())
            ax.errorbar(xs, [ests[x].value for x in xs], yerr=list(zip(*(ests[x].errorbar() for x in xs))),
                        marker=MARKERS[i % len(MARKERS)], capsize=3, color=method_color("grass"), ls=LINESTYLES[i % len(LINESTYLES)],
                        label=f"grass, {name}{fixed}")
            lisa = runs.loc[(runs["method"] == "lisa") & same].get("acc/avg")
            if lisa is not None and lisa.notna().any():
                ax.axhline(lisa.mean(), color=method_color("lisa"), ls=LINESTYLES[i % len(LINESTYLES)], lw=1,
                           label=f"lisa, {name} (mean, reference)")
        values = sorted(grass[p].dropna().astype(float).unique())
        if values[0] > 0 and values[-1] / values[0] >= 10:
            ax.set_xscale("log")
            ax.minorticks_off()  # only the grid's own values are labelled
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.set_xlabel(SENSITIVITY[p])
        ax.set_ylabel("average accuracy (%)")
        ax.set_title(f"GRASS: accuracy vs {SENSITIVITY[p].split(' (')[0]}")
        ax.grid(alpha=0.3)
    fig.suptitle("bars: 95% interval (one run) or ± std (seeds)")
    shared_legend(fig, axes, ncols=2)
    return fig
