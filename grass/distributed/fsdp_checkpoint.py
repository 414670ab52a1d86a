"""Sharded checkpoints of FSDP runs with ``torch.distributed.checkpoint`` (DCP).

``checkpoint/sharded/`` is a DCP folder written by every rank (its own shards) holding

* ``model/<name>``: the trained parameters (the ones the optimizer holds; frozen weights are
  reloaded from the base model, as for unsharded checkpoints);
* ``optim/<name>/<key>``: optimizer state per parameter (``exp_avg``, ``exp_avg_sq``, ``step``):
  ``torch.optim.AdamW``'s ``DTensor`` moments (sharded like the parameter) and step counters;
* ``rank<r>/<name>/<key>``: the offload engine's state, plain tensors of rank ``r``'s shard (its
  host copy: wrapping it in a ``DTensor`` would move it to the GPU, the whole offloaded state at
  once), saved and loaded by that rank only.

``checkpoint/trainer.pt`` (rank 0, as without FSDP) holds the step, data position, LR schedule,
method state, RNG and the optimizer's hyper-parameter groups. Written under ``checkpoint.tmp``
and swapped in by rank 0 once every rank has finished. The training loop refuses to resume with
another world size before anything is loaded (the global batch would change).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from grass import checkpoint as ckpt
from grass.distributed.context import DistContext
from grass.distributed.shards import is_sharded


def _params_in_order(optimizer) -> list[torch.Tensor]:
    # the numbering of optimizer.state_dict()["state"], for torch optimizers and the offload engine
    return [p for g in optimizer.param_groups for p in g["params"]]


def _names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def sharded_state(model: nn.Module, optimizer, rank: int) -> tuple[dict, dict]:
    """The DCP state of a sharded run, as this rank contributes it.

    Returns:
        ``(state, optim_meta)``: ``state`` maps DCP keys to tensors; ``optim_meta`` is the rest of
        the optimizer's state dict (param groups, and the offload engine's unit layout).
    """
    names, params = _names(model), _params_in_order(optimizer)
    trained = set(ckpt.trained_param_names(model, optimizer))
    state: dict[str, torch.Tensor] = {f"model/{n}": p for n, p in model.named_parameters() if n in trained}
    sd = optimizer.state_dict()
    for i, entry in sd["state"].items():
        p = params[int(i)]
        for k, v in entry.items():
            local = is_sharded(p) and torch.is_tensor(v) and not is_sharded(v) and v.dim() > 0
            state[f"{f'rank{rank}' if local else 'optim'}/{names[id(p)]}/{k}"] = v
    return state, {k: v for k, v in sd.items() if k != "state"}


def save_sharded(run_dir: Path, *, model: nn.Module, optimizer, scheduler, method, step: int, data_position: int,
                 extra: dict | None, ctx: DistContext) -> Path:
    """Every rank: write its shards; rank 0: the trainer record, then swap the folder in."""
    import torch.distributed.checkpoint as dcp

    if ctx.rank == 0:
        ckpt.fresh_tmp(run_dir)
    ctx.barrier()
    tmp = Path(run_dir) / (ckpt.CHECKPOINT + ".tmp")
    state, optim_meta = sharded_state(model, optimizer, ctx.rank)
    dcp.save(state, checkpoint_id=str(tmp / ckpt.SHARDED))
    final = Path(run_dir) / ckpt.CHECKPOINT
    if ctx.rank == 0:
        torch.save(ckpt.trainer_record(step, data_position, scheduler, method, extra, optim_meta=optim_meta),
                   tmp / "trainer.pt")
        ckpt.swap_in(run_dir)
    ctx.barrier()
    return final


def load_sharded(run_dir: Path, *, model: nn.Module, optimizer, scheduler, method, rank: int) -> dict:
    """Every rank: restore its shards of :func:`save_sharded`'s checkpoint, and the rest.

    Returns:
        The trainer record (``step``, ``data_position``, ``extra``).
    """
    import torch.distributed.checkpoint as dcp

    folder = Path(run_dir) / ckpt.CHECKPOINT
    trainer = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=False)
    # The method first: it restores which layers are trainable, which the optimizer state follows.
    method.load_state_dict(trainer["method"])
    by_name = dict(model.named_parameters())
    reader = dcp.FileSystemReader(str(folder / ckpt.SHARDED))
    state: dict[str, torch.Tensor] = {}
    mine = f"rank{rank}"
    for key, meta in reader.read_metadata().state_dict_metadata.items():
        kind, rest = key.split("/", 1)
        if kind == "model":
            state[key] = by_name[rest]  # loaded in place into this rank's shard
        elif kind == mine:  # the offload engine's plain local shards, as this rank saved them
            state[key] = torch.zeros(tuple(meta.size), dtype=meta.properties.dtype)
        elif kind == "optim":
            p, dtype = by_name[rest.rsplit("/", 1)[0]], meta.properties.dtype
            if is_sharded(p) and tuple(meta.size) == tuple(p.shape):
                state[key] = torch.zeros_like(p, dtype=dtype)  # a DTensor sharded like the parameter
            else:
                state[key] = torch.zeros(tuple(meta.size), dtype=dtype)
    with torch.no_grad():
        dcp.load(state, storage_reader=reader)
    index = {id(p): i for i, p in enumerate(_params_in_order(optimizer))}
    opt_state: dict[int, dict] = {}
    for key, v in state.items():
        kind, rest = key.split("/", 1)
        if kind != "model":
            name, k = rest.rsplit("/", 1)
            opt_state.setdefault(index[id(by_name[name])], {})[k] = v
    optimizer.load_state_dict({"state": opt_state, **trainer["optim_meta"]})
    scheduler.load_state_dict(trainer["scheduler"])
    ckpt.set_rng_state(trainer["rng"])
    return trainer
