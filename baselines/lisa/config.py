"""Config of LISA: the layer-wise fields with LISA's defaults (gamma 2, K 20, state reset)."""
from dataclasses import dataclass

from grass.layerwise import LayerwiseConfig


@dataclass
class LISAConfig(LayerwiseConfig):
    name: str = "lisa"
