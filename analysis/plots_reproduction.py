"""The figures of docs/reproduction.md: held-out loss over steps per method, MGN profile per task."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import Collection
from analysis.verdicts import method_key


def reproduction_figures(coll: Collection, metrics: dict[str, pd.DataFrame], extra: dict, fig_dir: Path) -> list[str]:
    """Held-out loss over steps (seed bands) and MGN profiles per task; returns markdown image lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots_runs import heldout_series
    from analysis.plots_style import method_color

    fig_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    runs = coll.runs.copy()
    runs["_key"] = runs.apply(method_key, axis=1)
    tasks = [t for t in ("math", "commonsense") if t in set(runs["task"])]
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for key, g in runs[runs["task"] == task].groupby("_key"):
                curves = [c for c in (heldout_series(r, metrics.get(r["run_id"], pd.DataFrame()))["loss/heldout"]
                                      for _, r in g.iterrows()) if not c.empty]
                if not curves:
                    continue
                frame = pd.concat(curves, axis=1)
                mean, sd = frame.mean(axis=1), frame.std(axis=1, ddof=1).fillna(0)
                color = method_color(key.rstrip("*"))
                ax.plot(mean.index, mean, label=f"{key} (n={frame.shape[1]})", color=color, marker="o", ms=3,
                        linestyle="--" if key.endswith("*") else "-")  # markers: a lone point still shows
                ax.fill_between(mean.index, mean - sd, mean + sd, color=color, alpha=0.15)
            ax.set_title(f"{task}: held-out loss (mean ± std over seeds)")
            ax.set_xlabel("step")
            ax.set_ylabel("loss on held-out response tokens")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(fig_dir / "repro_heldout_loss.png", dpi=120)
        plt.close(fig)
        lines.append("![Held-out loss over steps](figures/repro_heldout_loss.png)")
    profiles = {t: ps for t, ps in extra.get("profiles", {}).items() if ps}
    if profiles:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        for task, ps in profiles.items():
            arr = np.stack(ps)
            x = np.arange(arr.shape[1])
            ax.plot(x, arr.mean(axis=0), marker="o", ms=3, label=f"{task} ({len(ps)} seed{'' if len(ps) == 1 else 's'})")
            if len(ps) > 1:
                ax.fill_between(x, arr.min(axis=0), arr.max(axis=0), alpha=0.15)
        ax.set_xlabel("decoder layer")
        ax.set_ylabel("probe MGN / mean")
        ax.set_title(f"GRASS probe importance per layer, {extra.get('profiles_from', coll.experiment)} "
                     "(band: min-max over seeds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(fig_dir / "repro_mgn_by_task.png", dpi=120)
        plt.close(fig)
        lines.append("![MGN profile per task](figures/repro_mgn_by_task.png)")
    return lines
