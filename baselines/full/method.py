"""Full fine-tuning: every parameter trainable, one AdamW over all of them."""
from __future__ import annotations

import torch
from torch import nn

from baselines.full.config import FullConfig
from grass.interface import FinetuneMethod
from grass.optim.adamw import adamw


class FullFinetune(FinetuneMethod):
    name = "full"
    Config = FullConfig

    def prepare(self, model: nn.Module) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return adamw([p for p in model.parameters() if p.requires_grad], self.run_cfg.train)
