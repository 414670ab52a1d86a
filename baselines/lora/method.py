"""LoRA / DoRA: frozen base weights, trainable low-rank adapters (HF PEFT)."""
from __future__ import annotations

import torch
from torch import nn

from baselines.lora.config import DoRAConfig, LoRAConfig
from grass.interface import FinetuneMethod
from grass.optim.adamw import adamw


class LoRA(FinetuneMethod):
    name = "lora"
    Config = LoRAConfig
    use_dora = False

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        c = self.cfg
        targets = c.target_modules[0] if list(c.target_modules) == ["all-linear"] else list(c.target_modules)
        peft_cfg = LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=targets,
                              use_dora=self.use_dora, task_type="CAUSAL_LM")
        try:
            return get_peft_model(model, peft_cfg)
        except ValueError as e:  # PEFT's "Target modules {...} not found in the base model"
            from grass.errors import ConfigError

            raise ConfigError(f"method.target_modules={list(c.target_modules)} does not fit this model "
                              f"({str(e).splitlines()[0]}); use [all-linear] or names of its linear layers, "
                              f"e.g. [q_proj,v_proj]") from None

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return adamw([p for p in model.parameters() if p.requires_grad], self.run_cfg.train)

    def save_model(self, model: nn.Module, out_dir: str, mode: str) -> None:
        """``adapter``: the PEFT adapter folder; ``full``: adapters merged into the base weights."""
        if mode == "adapter":
            model.save_pretrained(out_dir)
        else:
            import copy

            copy.deepcopy(model).merge_and_unload().save_pretrained(out_dir)


class DoRA(LoRA):
    name = "dora"
    Config = DoRAConfig
    use_dora = True
