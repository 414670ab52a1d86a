"""Optimizer construction shared by all methods, so every method gets the same AdamW."""
from __future__ import annotations

import torch


def adamw(params, train_cfg) -> torch.optim.AdamW:
    """AdamW with the run's hyper-parameters over ``params`` (tied weights deduplicated).

    torch picks the implementation (per-tensor on a CPU, foreach on CUDA), as a user would get.
    """
    unique = list({id(p): p for p in params}.values())
    return torch.optim.AdamW(unique, lr=train_cfg.lr, betas=(train_cfg.adam_beta1, train_cfg.adam_beta2),
                             eps=train_cfg.adam_eps, weight_decay=train_cfg.weight_decay)
