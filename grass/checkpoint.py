"""Save and resume a run exactly: trained weights, optimizer (offloaded state included), LR
schedule, method state, RNG states, data position and step.

A checkpoint is a folder written under a temporary name and swapped in with renames, so a crash
while saving leaves the previous checkpoint intact. Under ``train.parallel=fsdp`` weights and
optimizer state are saved sharded by every rank (:mod:`grass.distributed.fsdp_checkpoint`); the
rest is the same ``trainer.pt`` rank 0 writes here.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from grass.errors import GrassError

CHECKPOINT = "checkpoint"
SHARDED = "sharded"  # the torch.distributed.checkpoint folder of an FSDP checkpoint


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trained_param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the parameters the optimizer may update (the rest are reloaded from the base model)."""
    in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
    return [n for n, p in model.named_parameters(remove_duplicate=True) if id(p) in in_opt]


def save_checkpoint(run_dir: Path, *, model: nn.Module, optimizer, scheduler, method, step: int,
                    data_position: int, extra: dict | None = None, dist=None) -> Path:
    """Write ``run_dir/checkpoint`` atomically (previous one kept until the new one is complete).

    Called by rank 0 only, except under FSDP (``dist.sharded``), where every rank writes its shards.
    """
    if dist is not None and dist.sharded:
        from grass.distributed.fsdp_checkpoint import save_sharded

        return save_sharded(run_dir, model=model, optimizer=optimizer, scheduler=scheduler, method=method,
                            step=step, data_position=data_position, extra=extra, ctx=dist)
    tmp = fresh_tmp(run_dir)
    names = set(trained_param_names(model, optimizer))
    weights = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if n in names}
    torch.save(weights, tmp / "weights.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(trainer_record(step, data_position, scheduler, method, extra), tmp / "trainer.pt")
    return swap_in(run_dir)


def fresh_tmp(run_dir: Path) -> Path:
    """An empty ``checkpoint.tmp`` folder to write a new checkpoint into."""
    tmp = Path(run_dir) / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def trainer_record(step: int, data_position: int, scheduler, method, extra: dict | None, **more) -> dict:
    """What ``trainer.pt`` holds: position, schedule, method state, RNG states, ``extra``."""
    return {"step": step, "data_position": data_position, "scheduler": scheduler.state_dict(),
            "method": method.state_dict(), "rng": rng_state(), "extra": extra or {}, **more}


def swap_in(run_dir: Path) -> Path:
    """Replace ``checkpoint`` by the complete ``checkpoint.tmp`` (the old one survives a crash here)."""
    final, tmp = Path(run_dir) / CHECKPOINT, Path(run_dir) / (CHECKPOINT + ".tmp")
    old = Path(run_dir) / (CHECKPOINT + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT / "trainer.pt").is_file()


def checkpoint_extra(run_dir: Path) -> dict:
    """The ``extra`` record of the checkpoint (e.g. ``world_size``), read before restoring anything."""
    trainer = torch.load(Path(run_dir) / CHECKPOINT / "trainer.pt", map_location="cpu", weights_only=False)
    return trainer.get("extra", {})


def load_checkpoint(run_dir: Path, *, model: nn.Module, optimizer, scheduler, method, dist=None) -> dict:
    """Restore everything saved by :func:`save_checkpoint`; return the trainer record
    (``step``, ``data_position``, ``extra``). RNG state is restored last.

    Raises:
        GrassError: the checkpoint is sharded (FSDP) and this run is not, or the other way round.
    """
    folder = Path(run_dir) / CHECKPOINT
    sharded_now = dist is not None and dist.sharded
    if (folder / SHARDED).is_dir() != sharded_now:
        if sharded_now:
            raise GrassError(f"the checkpoint in {folder} was written without FSDP and this run uses "
                             "train.parallel=fsdp: resume it with train.parallel=ddp, or use another log.run_id")
        raise GrassError(f"the checkpoint in {folder} is sharded (train.parallel=fsdp) and this run is not: resume "
                         "it under train.parallel=fsdp with the same number of processes, or use another log.run_id")
    if sharded_now:
        from grass.distributed.fsdp_checkpoint import load_sharded

        return load_sharded(run_dir, model=model, optimizer=optimizer, scheduler=scheduler, method=method,
                            rank=dist.rank)
    copy_weights(model, torch.load(folder / "weights.pt", map_location="cpu", weights_only=True), str(folder))
    trainer = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=False)
    # The method first: it restores which layers are trainable, which the optimizer state follows.
    method.load_state_dict(trainer["method"])
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(trainer["scheduler"])
    set_rng_state(trainer["rng"])
    return trainer


def copy_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``weights`` (parameter name -> tensor, as a checkpoint holds the trained ones) into ``model``.

    Raises:
        GrassError: a name the model has no parameter of, or a tensor of another shape (``source``
            says where the weights came from).
    """
    params = dict(model.named_parameters())
    bad = [n for n, w in weights.items() if n not in params or params[n].shape != w.shape]
    if bad:
        raise GrassError(f"{source} does not fit the model: {len(bad)} of its {len(weights)} parameters are not the "
                         f"model's (e.g. {bad[0]})")
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)


def remove_checkpoint(run_dir: Path) -> None:
    for name in (CHECKPOINT, CHECKPOINT + ".tmp", CHECKPOINT + ".old"):
        shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
