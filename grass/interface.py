"""The protocol every fine-tuning method implements.

A method never owns a training loop. :func:`grass.train.train` calls ``prepare(model)``,
``on_sharded(model)`` (FSDP only), ``build_optimizer(model)``, then per optimizer step::

    method.on_step_start(step)                      # e.g. draw a new set of active layers
    for micro in range(grad_accum):
        method.before_backward(step, micro == grad_accum - 1)
        loss.backward()
    method.on_after_backward(step)                  # e.g. measure per-layer gradient RMS
    if method.is_update_step(step):                 # False during GRASS's probe
        clip; optimizer.step(); scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    metrics.update(method.stats())
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grass.config import MethodConfig, RunConfig


class FinetuneMethod:
    """Base class with no-op hooks; subclasses override what they need.

    Attributes:
        name: registry key.
        Config: the method's config dataclass (a :class:`MethodConfig` subclass).
    """

    name: str = ""
    Config: type = MethodConfig

    def __init__(self, cfg: MethodConfig, run_cfg: RunConfig):
        self.cfg = cfg
        self.run_cfg = run_cfg

    def prepare(self, model: nn.Module) -> nn.Module:
        """Set trainability (and wrap, e.g. with PEFT); return the model to train."""
        return model

    def on_sharded(self, model: nn.Module) -> None:
        """Under ``train.parallel=fsdp``: called after FSDP replaced the parameters of the prepared
        model by sharded ones, before :meth:`build_optimizer`. Re-take any parameter references
        (lists, hooks) made in :meth:`prepare`."""

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over the parameters this method may ever train."""
        raise NotImplementedError

    def num_probe_steps(self) -> int:
        """Leading steps that update nothing (GRASS's probe); the LR schedule skips them."""
        return 0

    def on_step_start(self, step: int) -> None:
        """Called before the first micro-batch of optimizer step ``step`` (0-based)."""

    def before_backward(self, step: int, last_micro_batch: bool) -> None:
        """Called before each micro-batch's backward."""

    def on_after_backward(self, step: int) -> None:
        """Called once the step's gradients are accumulated, before clipping."""

    def is_update_step(self, step: int) -> bool:
        """Whether the optimizer steps at ``step``."""
        return True

    def stats(self) -> dict[str, Any]:
        """Per-step values for metrics.jsonl (e.g. active_layers, layer_probs)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """End-of-run values for result.json (stored under ``method/<key>``)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (sampler RNG, estimates, position in a period)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def save_model(self, model: nn.Module, out_dir: str, mode: str) -> None:
        """Save the fine-tuned weights (``mode``: 'full' or 'adapter')."""
        if mode == "adapter":
            from grass.errors import ConfigError

            raise ConfigError(f"train.save_model=adapter needs an adapter method (lora, dora), not '{self.name}'")
        model.save_pretrained(out_dir)
