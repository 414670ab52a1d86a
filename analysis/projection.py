"""The memory planner's projection of a set of methods at a GPU setting the paper used, beside the
paper's Table 4.

A CPU run cannot show the memory story: host and device are one memory there, so offloading
optimizer state saves nothing. This table shows what the same methods need on a GPU at the
paper's LLaMA2-7B setting, predicted by :mod:`grass.memory` from the model config alone (every
method at its default fields), next to the peak memory the paper reports.
"""
from __future__ import annotations

import functools
import json

import pandas as pd

from analysis import paper
from analysis.collect import flatten
from analysis.table_format import MISSING, Table
from grass.config import ADDED_LATER, load_config, to_dict
from grass.errors import GrassError
from grass.memory.model import GIB, METHODS, predict

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


@functools.lru_cache(maxsize=None)
def _config_defaults(method: str) -> dict:
    """A run's flattened config fields at their defaults, except fields added after runs were first
    recorded: a config without one ran as before the field existed (``grass.config.ADDED_LATER``)."""
    d = flatten(to_dict(load_config(None, [f"method.name={method}"])))
    return d | {f"{section}.{key}": value for (section, key), value in ADDED_LATER.items()}


def _listed(value) -> list:
    """A list field of a flattened config (:func:`analysis.collect.flatten` keeps lists as JSON text)."""
    return json.loads(value) if isinstance(value, str) else list(value)


def _planner_kwargs(row: pd.Series) -> dict:
    """:func:`grass.memory.model.predict` arguments for one run, from its flattened config."""
    defaults = _config_defaults(row["method"])

    def cfg(key):  # a field this run did not record (a NaN cell in a table of mixed runs): see above
        v = row.get(f"cfg.{key}")
        return defaults.get(key) if v is None or (not isinstance(v, (list, dict)) and pd.isna(v)) else v

    # The precision the run resolved (train/precision in its result) where it recorded one; else its
    # config's, reading auto as bf16, as on every GPU the paper used.
    resolved = row.get("train/precision")
    autocast = resolved == "bf16" if isinstance(resolved, str) else cfg("train.precision") in ("bf16", "auto")
    kw = dict(precision="bf16" if cfg("model.dtype") == "bfloat16" else "fp32", autocast=autocast,
              seq_len=int(cfg("train.seq_len")), batch=int(cfg("train.batch_size")),
              grad_ckpt=bool(cfg("train.gradient_checkpointing")))
    if row["method"] in ("lisa", "grass"):
        kw.update(n_active_layers=int(cfg("method.n_active_layers")), state_policy=cfg("method.state_policy"),
                  train_embeddings=bool(cfg("method.train_embeddings")), train_head=bool(cfg("method.train_head")),
                  offload_embeddings=bool(cfg("method.offload_embeddings")),
                  offload_chunk_mb=cfg("method.offload_chunk_mb"),
                  offload_fp32_state=bool(cfg("method.offload_fp32_state")))
        if row["method"] == "grass":
            kw["probe_checkpointing"] = bool(cfg("method.probe_checkpointing"))
    elif row["method"] in ("lora", "dora"):
        kw.update(lora_rank=int(cfg("method.rank")), lora_dropout=float(cfg("method.dropout")),
                  lora_targets=tuple(_listed(cfg("method.target_modules"))))
    return kw


def planned_gpu_gib(runs: pd.DataFrame) -> pd.DataFrame:
    """What each run would hold on a GPU, by the memory planner at the run's own config.

    A CPU run's byte accounting cannot show offloading (host and device are one memory, so an
    offloading run counts all its state as "device"); the planner, whose byte counts the tests hold
    equal to that accounting on a CPU, says what the same config keeps on a CUDA device. The precision is the one
    the run trained in (``train/precision``: an ``auto`` run that resolved to fp32 on a CPU without
    bf16 is planned in fp32, though on a GPU the same config would train in bf16); for a run that
    recorded none, its ``train.precision``, with ``auto`` read as bf16 autocast.

    Returns:
        Columns ``total`` (device GiB: weights, gradients, on-device optimizer state, activations)
        and ``optimizer_device`` (GiB), indexed as ``runs``; NaN for a method or model the planner
        does not know.
    """
    out = pd.DataFrame(index=runs.index, columns=["total", "optimizer_device"], dtype=float)
    for i, row in runs.iterrows():
        if row["method"] not in METHODS or not isinstance(row.get("model"), str):
            continue
        try:
            p = predict(row["model"], row["method"], **_planner_kwargs(row))
        except GrassError:  # a model the planner cannot resolve offline, LoRA targets or autocast it does not model
            continue
        out.loc[i] = [p.total / GIB, p.optimizer_device / GIB]
    return out
