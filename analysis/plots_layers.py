"""Layer-by-step heatmaps for the layer-wise methods (LISA, GRASS) from ``metrics.jsonl``.

One representative run (the first seed) per configuration: averaging which layers were active over
seeds would blur exactly what the figure is for.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.collect import groups, label
from analysis.plots_style import method_color, subplots

MAX_PANELS = 6
_VIRIDIS = colormaps["viridis"].with_extremes(bad="#eeeeee")  # NaN (not logged) in light grey
LAYER_AXIS = "decoder layer (0 = nearest the input)"


def _representatives(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame], methods: tuple[str, ...],
                     column: str) -> list[tuple[str, str, pd.DataFrame]]:
    """(method, panel title, metrics) of the lowest-seed run of each configuration that logged ``column``
    (the same seed across methods where they have it, so panels compare like with like)."""
    out = []
    several_tasks = runs["task"].nunique() > 1
    for (method, model, task, variant), g in groups(runs[runs["method"].isin(methods)]):
        where = f"{model}, {task}" if several_tasks else str(model)
        g = g.sort_values("seed")
        for d, seed in zip(g["run_dir"], g["seed"]):
            m = metrics.get(d, pd.DataFrame())
            if column in m and m[column].notna().any():
                out.append((method, f"{where}, {label(method, variant)}, seed {seed}", m.sort_values("step")))
                break
    return out


def layer_matrix(m: pd.DataFrame, column: str) -> np.ndarray:
    """Layers x logged steps: per-layer values of ``column`` (a list per step), NaN where absent.

    For ``active_layers`` (a list of indices) the cell is 1 where the layer was active, else 0.
    """
    if column == "active_layers":
        n = max([max(a) + 1 for a in m[column].dropna() if len(a)] +
                [len(p) for p in m.get("layer_probs", pd.Series(dtype=object)).dropna()] + [1])
        mat = np.zeros((n, len(m)))
        for j, active in enumerate(m[column]):
            if isinstance(active, list):
                mat[active, j] = 1.0
        return mat
    n = max(len(v) for v in m[column].dropna())
    mat = np.full((n, len(m)), np.nan)
    for j, v in enumerate(m[column]):
        if isinstance(v, list):
            mat[: len(v), j] = v
    return mat


def _extent(m: pd.DataFrame, n_layers: int) -> list[float]:
    return [m["step"].iloc[0] - 0.5, m["step"].iloc[-1] + 0.5, -0.5, n_layers - 0.5]


def _axes_labels(ax) -> None:
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(LAYER_AXIS)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # layers and steps are whole numbers
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_probe(ax, m: pd.DataFrame) -> bool:
    """Dashed line where GRASS's probing phase ends; True if there was one."""
    if "probe" not in m or not m["probe"].fillna(False).astype(bool).any():
        return False
    end = m.loc[m["probe"].fillna(False).astype(bool), "step"].max() + 0.5
    ax.axvline(end, color="black", ls="--", lw=1.2)
    return True


def plot_active_layers(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame]) -> Figure | None:
    """Which decoder layers were trained at each step (LISA and GRASS), one panel per configuration."""
    reps = _representatives(runs, metrics, ("lisa", "grass"), "active_layers")
    if not reps:
        return None
    shown = reps[:MAX_PANELS]
    fig, axes = subplots(len(shown), width=5.5, height=3.6, ncols_max=2)
    probe = False
    for ax, (method, title, m) in zip(axes, shown):
        mat = layer_matrix(m, "active_layers")
        ax.imshow(mat, aspect="auto", origin="lower", interpolation="nearest", extent=_extent(m, mat.shape[0]),
                  cmap=ListedColormap(["#f2f2f2", method_color(method)]), vmin=0, vmax=1)
        probe = _mark_probe(ax, m) or probe
        ax.set_title(title, fontsize=10)
        _axes_labels(ax)
    more = f" (first {len(shown)} of {len(reps)} configurations)" if len(reps) > len(shown) else ""
    fig.suptitle(f"Layers trained at each step: colored = trained, grey = frozen{more}"
                 + ("\ndashed line: end of GRASS's probing phase (no layer is updated before it)" if probe else ""))
    return fig


def plot_grass_importance(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame]) -> Figure | None:
    """GRASS's per-layer MGN and sampling probabilities over training (layer x step heatmaps).

    One row per configuration: MGN (log color scale when it spans more than 10x) and p.
    """
    reps = _representatives(runs, metrics, ("grass",), "mgn")
    if not reps:
        return None
    shown = reps[: MAX_PANELS // 2]
    fig = Figure(figsize=(12, 0.6 + 3.6 * len(shown)), layout="constrained")
    # One subfigure per configuration: its name once above its two panels.
    subfigs = fig.subfigures(len(shown), 1, squeeze=False).ravel()
    probe = False
    for (_, title, m), sub in zip(shown, subfigs):
        sub.suptitle(title, fontsize=11)
        ax_m, ax_p = sub.subplots(1, 2)
        for ax, column, name in ((ax_m, "mgn", "MGN (mean gradient RMS)"), (ax_p, "layer_probs", "sampling probability p")):
            if column not in m or m[column].isna().all():
                ax.set_visible(False)
                continue
            mat = layer_matrix(m, column)
            if "probe" in m:  # before the probe ends MGN is still being measured: placeholders, not data
                mat[:, m["probe"].fillna(False).astype(bool).to_numpy()] = np.nan
            finite = mat[np.isfinite(mat)]
            log = column == "mgn" and finite.size and finite.min() > 0 and finite.max() / finite.min() > 10
            im = ax.imshow(mat, aspect="auto", origin="lower", interpolation="nearest", cmap=_VIRIDIS,
                           extent=_extent(m, mat.shape[0]), norm=LogNorm() if log else None)
            sub.colorbar(im, ax=ax, label=name + (" (log scale)" if log else ""))
            probe = _mark_probe(ax, m) or probe
            ax.set_title(name, fontsize=10)
            _axes_labels(ax)
    more = f" (first {len(shown)} of {len(reps)} configurations)" if len(reps) > len(shown) else ""
    fig.suptitle(f"GRASS per-layer importance (MGN) and sampling probabilities over training{more}"
                 + ("\ndashed line: end of the probing phase (blank before it: MGN still being measured)"
                    if probe else ""), fontsize=12)
    return fig
