"""Config of BAdam: the fields of ``badam.BlockOptimizer`` that decide what is trained and when."""
from dataclasses import dataclass, field
from typing import Optional

from grass.config import MethodConfig
from grass.errors import ConfigError

SWITCH_MODES = ("random", "ascending", "descending", "fixed")


@dataclass
class BAdamConfig(MethodConfig):
    name: str = "badam"
    switch_block_every: int = field(default=50, metadata={"help": "K: optimizer steps between two block switches"})
    switch_mode: str = field(default="random", metadata={
        "help": "block order: random (a fresh permutation every pass over the blocks, as in the BAdam paper) | "
                "ascending | descending | fixed"})
    start_block: Optional[int] = field(default=None, metadata={
        "help": "index of the first block (blocks: [embeddings], decoder layers 0..L-1, [head]); null = the "
                "mode's own start"})
    include_embedding: bool = field(default=False, metadata={"help": "the input embeddings are one more block"})
    include_lm_head: bool = field(default=False, metadata={"help": "the final norm and LM head are one more block"})

    def validate(self, cfg) -> None:
        if self.switch_block_every <= 0:
            raise ConfigError(f"method.switch_block_every must be positive, got {self.switch_block_every}")
        if self.switch_mode not in SWITCH_MODES:
            raise ConfigError(f"method.switch_mode must be one of {', '.join(SWITCH_MODES)}; "
                              f"got '{self.switch_mode}'")
        if self.start_block is not None and self.start_block < 0:
            raise ConfigError(f"method.start_block must be >= 0 or null, got {self.start_block}")
