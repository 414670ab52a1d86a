"""LISA: embeddings and head always trained; gamma decoder layers drawn uniformly without
replacement every ``switch_every`` steps from a seeded generator."""
from __future__ import annotations

import torch

from baselines.lisa.config import LISAConfig
from grass.layerwise import LayerwiseMethod


class LISA(LayerwiseMethod):
    name = "lisa"
    Config = LISAConfig

    def draw(self) -> list[int]:
        perm = torch.randperm(len(self.lmap), generator=self.generator)
        return sorted(perm[: self.cfg.n_active_layers].tolist())
