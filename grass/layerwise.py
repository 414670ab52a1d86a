"""What LISA and GRASS share: a few decoder layers trainable at a time, switched every period.

Every parameter that may ever train is in the optimizer from the start; a frozen layer simply has
``requires_grad=False`` and ``grad=None``, which AdamW skips. So a newly drawn layer is updated
at once (LMFlow's first LISA release never updated them: its optimizer was built over the
layers trainable at step 0 only).

Optimizer state across a switch follows ``state_policy`` (DESIGN.md 2.6): ``keep`` leaves it
(memory grows with the layers visited), ``reset`` drops the state of layers leaving the active
set, ``offload`` keeps every layer's state in host memory (:mod:`grass.optim.offload`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from grass.config import MethodConfig
from grass.errors import ConfigError
from grass.interface import FinetuneMethod
from grass.layers import LayerMap, find_layers, freeze_all, set_requires_grad
from grass.optim.adamw import adamw
from grass.optim.offload_overlap import check_overlap
from grass.optim.offload_state import DEFAULT_CHUNK_MB, DEFAULT_FP32_STATE

log = logging.getLogger(__name__)
STATE_POLICIES = ("reset", "keep", "offload")


@dataclass
class LayerwiseConfig(MethodConfig):
    n_active_layers: int = field(default=2, metadata={"help": "gamma: decoder layers trained at a time"})
    switch_every: int = field(default=20, metadata={"help": "K / T_s: steps between two draws of the active set"})
    train_embeddings: bool = field(default=True, metadata={"help": "train the input embeddings at every step"})
    train_head: bool = field(default=True, metadata={"help": "train the final norm and LM head at every step"})
    state_policy: str = field(default="reset", metadata={"help": "optimizer state across switches: reset | keep | "
                                                                 "offload"})
    offload_embeddings: bool = field(default=True, metadata={"help": "offload: embeddings/head state in host "
                                                                     "memory too"})
    offload_chunk_mb: Optional[float] = field(default=DEFAULT_CHUNK_MB, metadata={
        "help": "offload: stream the state through two device slots in chunks of at most this many MiB and at "
                "most one decoder layer's state, so the device holds at most two layers' state whatever the "
                "model (the active units' state moves every step); null = whole layers cached on the device "
                "(+ a slot each for embeddings and head), moved only at switches"})
    offload_fp32_state: bool = field(default=DEFAULT_FP32_STATE, metadata={
        "help": "offload: false = state in the weights' dtype, no master (torch AdamW on bf16 weights, as "
                "lisa/reset: 4 B/param); true = fp32 moments + fp32 master weights for bf16 weights (12 B/param, "
                "3x the copies). Same numbers for fp32 weights"})
    overlap: str = field(default="step", metadata={"help": "offload: step (update layer by layer at optimizer.step) "
                                                           "| backward (update each layer during backward; needs "
                                                           "train.max_grad_norm=0 and train.grad_accum=1)"})

    def validate(self, cfg) -> None:
        if self.n_active_layers <= 0:
            raise ConfigError(f"method.n_active_layers must be positive, got {self.n_active_layers}")
        if self.switch_every <= 0:
            raise ConfigError(f"method.switch_every must be positive, got {self.switch_every}")
        if self.state_policy not in STATE_POLICIES:
            raise ConfigError(f"method.state_policy must be one of {', '.join(STATE_POLICIES)}; "
                              f"got '{self.state_policy}'")
        if self.overlap not in ("step", "backward"):
            raise ConfigError(f"method.overlap must be step or backward; got '{self.overlap}'")
        if self.offload_chunk_mb is not None and not self.offload_chunk_mb > 0:
            raise ConfigError(f"method.offload_chunk_mb must be positive or null, got {self.offload_chunk_mb}")
        if self.overlap == "backward" and self.state_policy != "offload":
            raise ConfigError("method.overlap=backward needs method.state_policy=offload")
        if self.state_policy == "offload":  # before the run directory exists, not in the optimizer
            check_overlap(self.overlap, cfg.train.grad_accum, cfg.train.max_grad_norm)


class LayerwiseMethod(FinetuneMethod):
    """Base of LISA and GRASS; subclasses implement :meth:`draw` (and may add a probe)."""

    Config = LayerwiseConfig

    def __init__(self, cfg: LayerwiseConfig, run_cfg):
        super().__init__(cfg, run_cfg)
        self.reseed(run_cfg.seed)
        self.active: list[int] = []
        self.period_start = 0
        self.lmap: LayerMap | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def reseed(self, seed: int) -> None:
        """Seed the layer sampler from a run seed."""
        # A generator of its own: the same on every DDP rank, and independent of the data order
        # and dropout RNG.
        self.generator = torch.Generator().manual_seed(seed * 7919 + 17)

    # -- hooks ---------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> nn.Module:
        self.lmap = find_layers(model)
        n = len(self.lmap)
        if self.cfg.n_active_layers > n:
            raise ConfigError(f"method.n_active_layers={self.cfg.n_active_layers} but the model has only {n} "
                              f"decoder layers; use at most {n}")
        freeze_all(model)
        self._set_always_trained(True)
        return model

    def on_sharded(self, model: nn.Module) -> None:
        self.lmap = find_layers(model)  # the embeddings/head lists held the unsharded parameters

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        tc = self.run_cfg.train
        if self.cfg.state_policy == "offload":
            from grass.optim.offload import LayerwiseOffloadAdamW

            opt = LayerwiseOffloadAdamW(
                self.units(), lr=tc.lr, betas=(tc.adam_beta1, tc.adam_beta2), eps=tc.adam_eps,
                weight_decay=tc.weight_decay, device=next(model.parameters()).device,
                offload_embeddings=self.cfg.offload_embeddings, overlap=self.cfg.overlap,
                grad_accum=tc.grad_accum, max_grad_norm=tc.max_grad_norm, chunk_mb=self.cfg.offload_chunk_mb,
                fp32_state=self.cfg.offload_fp32_state,
                # tests and scripts/offload_traffic.py: on a CPU, stage through CPU "device" slots as
                # on CUDA, so the slot logic and its byte accounting run in a real training run
                _simulate_offload=os.environ.get("GRASS_SIMULATE_OFFLOAD") == "1")
            if self.cfg.overlap == "backward":
                from grass.distributed import ddp_active

                if ddp_active():  # the hooks would update from the local gradient, before DDP's all-reduce
                    raise ConfigError("method.overlap=backward is not supported under torch.distributed (DDP, "
                                      "FSDP); use method.overlap=step")
                opt.attach_backward_hooks()
        else:
            opt = adamw([p for _, ps in self.units() for p in ps], tc)
        self.optimizer = opt
        return opt

    def units(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Named parameter groups: ``embed``, ``layer.0`` ... ``layer.{L-1}``, ``head`` (trainable ones)."""
        out = []
        if self.cfg.train_embeddings and self.lmap.embed_params:
            out.append(("embed", list(self.lmap.embed_params)))
        out += [(f"layer.{i}", self.lmap.layer_params(i)) for i in range(len(self.lmap))]
        if self.cfg.train_head and self.lmap.head_params:
            out.append(("head", list(self.lmap.head_params)))
        return out

    def on_step_start(self, step: int) -> None:
        if step == self.first_draw_step() or (step > self.first_draw_step()
                                              and (step - self.period_start) % self.cfg.switch_every == 0):
            self.switch(step)

    def stats(self) -> dict:
        out = {"active_layers": sorted(self.active), "layer_probs": [round(float(x), 6) for x in self.probs()]}
        if getattr(self.optimizer, "offloading", False):
            # Cumulative state traffic of the offload engine: it grows at layer switches only
            # while the active layers fit in its staging slots.
            moved = self.optimizer.transfer_bytes()
            out.update({"offload/h2d_mib": round(moved["h2d"] / 2**20, 3),
                        "offload/d2h_mib": round(moved["d2h"] / 2**20, 3)})
        return out

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "active": list(self.active),
                "period_start": self.period_start}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.period_start = state["period_start"]
        self._activate(list(state["active"]))

    # -- to override ---------------------------------------------------------------------------
    def first_draw_step(self) -> int:
        """The step at which the first active set is drawn."""
        return 0

    def probs(self) -> torch.Tensor:
        """Sampling probability of each layer, shape ``[L]``."""
        n = len(self.lmap)
        return torch.full((n,), 1.0 / n)

    def draw(self) -> list[int]:
        """Draw the next active set (gamma distinct layer indices)."""
        raise NotImplementedError

    # -- mechanics -----------------------------------------------------------------------------
    def switch(self, step: int) -> None:
        self.period_start = step
        self._activate(self.draw())
        log.debug("step %d: active layers %s", step, self.active)

    def _activate(self, new: list[int]) -> None:
        leaving = set(self.active) - set(new)
        for i in leaving:
            set_requires_grad(self.lmap.layer_params(i), False)
            if self.cfg.state_policy == "reset" and self.optimizer is not None:
                for p in self.lmap.layer_params(i):
                    self.optimizer.state.pop(p, None)
        for i in new:
            set_requires_grad(self.lmap.layer_params(i), True)
        self.active = list(new)

    def _set_always_trained(self, flag: bool) -> None:
        if self.cfg.train_embeddings:
            set_requires_grad(self.lmap.embed_params, flag)
        if self.cfg.train_head:
            set_requires_grad(self.lmap.head_params, flag)
