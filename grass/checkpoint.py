"""Save and resume a run exactly: trained weights, optimizer (offloaded state included), LR
schedule, method state, RNG states, data position and step.

A checkpoint is a folder written under a temporary name and swapped in with renames, so a crash
while saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT = "checkpoint"


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
                    data_position: int, extra: dict | None = None) -> Path:
    """Write ``run_dir/checkpoint`` atomically (previous one kept until the new one is complete)."""
    final = Path(run_dir) / CHECKPOINT
    tmp = Path(run_dir) / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = set(trained_param_names(model, optimizer))
    weights = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if n in names}
    torch.save(weights, tmp / "weights.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({
        "step": step,
        "data_position": data_position,
        "scheduler": scheduler.state_dict(),
        "method": method.state_dict(),
        "rng": rng_state(),
        "extra": extra or {},
    }, tmp / "trainer.pt")
    old = Path(run_dir) / (CHECKPOINT + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT / "trainer.pt").is_file()


def load_checkpoint(run_dir: Path, *, model: nn.Module, optimizer, scheduler, method) -> dict:
    """Restore everything saved by :func:`save_checkpoint`; return the trainer record
    (``step``, ``data_position``, ``extra``). RNG state is restored last."""
    folder = Path(run_dir) / CHECKPOINT
    weights = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)
    trainer = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=False)
    # The method first: it restores which layers are trainable, which the optimizer state follows.
    method.load_state_dict(trainer["method"])
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(trainer["scheduler"])
    set_rng_state(trainer["rng"])
    return trainer


def remove_checkpoint(run_dir: Path) -> None:
    for name in (CHECKPOINT, CHECKPOINT + ".tmp", CHECKPOINT + ".old"):
        shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
