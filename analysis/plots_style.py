"""Shared plotting helpers: one color per method, subplot grids, saving as PNG + PDF.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot, so
no GUI backend is needed, nothing global is touched and figures are freed when dropped.
"""
from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure


# Baselines in muted/cool colors, the two layer-wise methods in warm ones, GRASS the strongest.
METHOD_COLORS = {"full": "#555555", "lora": "#1f77b4", "dora": "#17becf", "lisa": "#ff7f0e", "grass": "#d62728"}
_EXTRA_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22")
# Variants of one method share its color and differ by marker / line style.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")


def method_color(method: str) -> str:
    """The method's color, the same in every figure."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA_COLORS[sum(map(ord, str(method))) % len(_EXTRA_COLORS)]


def subplots(n: int, width: float = 5.0, height: float = 3.8, ncols_max: int = 3) -> tuple[Figure, list]:
    """A figure with ``n`` axes in a grid (at most ``ncols_max`` wide), constrained layout."""
    ncols = min(n, ncols_max)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``<name>.png`` (150 dpi) and ``<name>.pdf``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (for embedding in the HTML report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def shared_legend(fig: Figure, axes: list, ncols: int = 2) -> None:
    """One legend under all panels (labels deduplicated), so no legend ever covers data."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(text, handle)
    if seen:
        # As many columns as fit the figure's width (about 0.07 in per character at 9 pt, plus the key).
        fit = int(fig.get_figwidth() / (0.068 * max(map(len, seen)) + 0.5))
        ncols = max(1, min(ncols, fit, len(seen)))
        fig.set_figheight(fig.get_figheight() + 0.22 * -(-len(seen) // ncols))  # room for the legend's rows
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=ncols, fontsize=9,
                   frameon=False)
