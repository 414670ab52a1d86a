"""Config of LoRA / DoRA."""
from dataclasses import dataclass, field

from grass.config import MethodConfig


@dataclass
class LoRAConfig(MethodConfig):
    name: str = "lora"
    rank: int = field(default=8, metadata={"help": "adapter rank r"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale = alpha / rank)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter input"})
    target_modules: list = field(default_factory=lambda: ["all-linear"],
                                 metadata={"help": "module names to adapt; 'all-linear' = every linear layer "
                                                   "of the decoder (not the LM head)"})

    def validate(self, cfg) -> None:
        from grass.errors import ConfigError

        if self.rank <= 0:
            raise ConfigError(f"method.rank must be positive, got {self.rank}")
        if self.alpha <= 0:
            raise ConfigError(f"method.alpha must be positive, got {self.alpha}")
        if not self.target_modules:
            raise ConfigError("method.target_modules is empty; use [all-linear] or module names, e.g. [q_proj,v_proj]")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"method.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DoRAConfig(LoRAConfig):
    name: str = "dora"
