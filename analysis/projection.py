"""The memory planner's projection of a set of methods at a GPU setting the paper used, beside the
paper's Table 4.

A CPU run cannot show the memory story: host and device are one memory there, so offloading
optimizer state saves nothing. This table shows what the same methods need on a GPU at the
paper's LLaMA2-7B setting, predicted by :mod:`grass.memory` from the model config alone (every
method at its default fields), next to the peak memory the paper reports.
"""
from __future__ import annotations

from analysis import paper
from analysis.table_format import MISSING, Table
from grass.memory.model import GIB, predict

PAPER_SETTING = {"model": "llama2-7b", "seq_len": 1024, "batch": 4, "precision": "bf16", "grad_ckpt": True}


def projection_table(methods: list[str], setting: dict | None = None) -> Table:
    """Predicted device memory of ``methods`` at ``setting`` (default: the paper's LLaMA2-7B one).

    Args:
        methods: method names known to the planner (``full``, ``lora``, ``dora``, ``lisa``, ``grass``).
        setting: ``model``, ``seq_len``, ``batch``, ``precision``, ``grad_ckpt``.

    Returns:
        A table: total device GiB, optimizer state on the device and in host memory, ratio to
        full fine-tuning and to LISA (when they are among ``methods``), and the paper's figure.
    """
    s = {**PAPER_SETTING, **(setting or {})}
    preds = {m: predict(s["model"], m, precision=s["precision"], seq_len=s["seq_len"], batch=s["batch"],
                        grad_ckpt=s["grad_ckpt"]) for m in methods}
    ref = {k: preds[k].total for k in ("full", "lisa") if k in preds}
    header = ["Method", "Total device (GiB)", "Opt. state device (GiB)", "Opt. state host (GiB)",
              *(f"x {k}" for k in ref), "Paper (GB)"]
    rows = []
    for m, p in preds.items():
        try:
            published = f"{paper.figure(f'peak_mem/{m}').value:.1f}"
        except KeyError:
            published = MISSING
        rows.append([p.label, f"{p.total / GIB:.2f}", f"{p.optimizer_device / GIB:.2f}",
                     f"{p.optimizer_host / GIB:.2f}", *(f"{p.total / r:.2f}" for r in ref.values()), published])
    setting_text = (f"{s['model']}, seq {s['seq_len']} x batch {s['batch']}, {s['precision']}"
                    f"{', gradient checkpointing' if s['grad_ckpt'] else ''}")
    return Table(
        name="memory_projection", title=f"Projected GPU memory at the paper's setting ({setting_text})",
        header=header, rows=rows, align="l" + "r" * (len(header) - 1),
        notes=[f"Predicted by `grass memory --model {s['model']} --method all --seq-len {s['seq_len']} --batch "
               f"{s['batch']} --precision {s['precision']}{' --grad-ckpt' if s['grad_ckpt'] else ''}` from the "
               f"config alone, each method at its default fields; paper: {paper.PAPER}, Table 4 (GB, its own "
               "measurement of peak memory; LoRA's value is approximate)."])
