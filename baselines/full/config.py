"""Config of full fine-tuning (no fields beyond the method name)."""
from dataclasses import dataclass

from grass.config import MethodConfig


@dataclass
class FullConfig(MethodConfig):
    name: str = "full"
