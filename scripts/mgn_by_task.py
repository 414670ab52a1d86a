"""Layer importance depends on the task: GRASS's probe MGN per layer on two training mixtures.

Runs GRASS's probe (``method.probe_steps`` steps, nothing updated) on the same model for each
task and plots the normalized MGN (MGN / mean MGN) per decoder layer, side by side.

    python scripts/mgn_by_task.py --model smollm2-135m --tasks math commonsense --out docs/figures/mgn_by_task
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from grass.config import load_config  # noqa: E402
from grass.results import read_metrics  # noqa: E402
from grass.train import train  # noqa: E402


def probe_mgn(model: str, task: str, probe_steps: int, batch: int, seq_len: int, seed: int) -> list[float]:
    """The MGN estimate right after the probe (the one the first draw uses)."""
    with tempfile.TemporaryDirectory() as runs:
        cfg = load_config(None, [f"model.name={model}", "method.name=grass", f"data.train={task}",
                                 f"method.probe_steps={probe_steps}", f"train.max_steps={probe_steps + 1}",
                                 f"train.batch_size={batch}", f"train.seq_len={seq_len}", f"seed={seed}",
                                 "method.state_policy=reset", "log.wandb=disabled", f"log.runs_dir={runs}"])
        result = train(cfg)
        return read_metrics(result["run_dir"])[probe_steps]["mgn"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", nargs="+", default=["math", "commonsense"])
    ap.add_argument("--probe-steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/figures/mgn_by_task")
    args = ap.parse_args()

    mgn = {t: probe_mgn(args.model, t, args.probe_steps, args.batch, args.seq_len, args.seed) for t in args.tasks}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"model": args.model, "probe_steps": args.probe_steps,
                                                    "batch": args.batch, "seq_len": args.seq_len, "mgn": mgn},
                                                   indent=1))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(mgn)
    for k, (task, values) in enumerate(mgn.items()):
        mean = sum(values) / len(values)
        xs = [i + (k - (len(mgn) - 1) / 2) * width for i in range(len(values))]
        ax.bar(xs, [v / mean for v in values], width=width, label=task)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("decoder layer (0 = nearest the embeddings)")
    ax.set_ylabel("MGN / mean MGN")
    ax.set_title(f"GRASS probe: layer importance by task ({args.model}, {args.probe_steps} probe steps, "
                 f"batch {args.batch}, seq {args.seq_len})", fontsize=10)
    ax.legend(title="training data")
    ax.set_xticks(range(len(next(iter(mgn.values())))))
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out.with_suffix(f".{ext}"), dpi=150)
    print(f"wrote {out}.png / .pdf / .json")


if __name__ == "__main__":
    main()
