"""Config of GRASS (DESIGN.md section 2; every choice the paper leaves open is a field)."""
from dataclasses import dataclass, field

from grass.errors import ConfigError
from grass.layerwise import LayerwiseConfig


@dataclass
class GRASSConfig(LayerwiseConfig):
    name: str = "grass"
    switch_every: int = field(default=25, metadata={"help": "T_s: steps between two draws (the paper: 25-50 best)"})
    state_policy: str = field(default="offload", metadata={"help": "optimizer state across switches: offload | "
                                                                   "reset | keep"})
    probe_steps: int = field(default=10, metadata={"help": "T_p: leading steps that only measure every layer's "
                                                           "gradient RMS and update nothing"})
    temperature: float = field(default=1.0, metadata={"help": "tau in p = softmax(normalize(MGN) / tau)"})
    normalize: str = field(default="mean", metadata={"help": "mean (MGN / mean(MGN): tau is scale-free) | none "
                                                             "(the paper's literal formula)"})
    alpha: float = field(default=0.5, metadata={"help": "EMA weight of the new window in the MGN refresh"})
    refresh_every: int = field(default=25, metadata={"help": "T_u: steps between MGN refreshes of the layers "
                                                             "that were active"})
    mode: str = field(default="adaptive", metadata={"help": "adaptive | static (GRASS*: never refresh after "
                                                            "the probe)"})
    probe_in_hook: bool = field(default=True, metadata={"help": "measure and free each gradient in a "
                                                                "post-accumulate-grad hook during the probe"})
    probe_checkpointing: bool = field(default=True, metadata={
        "help": "recompute each decoder block's activations in the probe's backward (when "
                "train.gradient_checkpointing is off): the probe takes every block's weight gradient, so "
                "without this the probe, not the update steps, sets the run's activation peak; costs one "
                "more forward on the probe steps only"})

    def validate(self, cfg) -> None:
        super().validate(cfg)
        if self.probe_steps < 0:
            raise ConfigError(f"method.probe_steps must be >= 0, got {self.probe_steps}")
        if self.probe_steps >= cfg.train.max_steps:
            raise ConfigError(f"method.probe_steps={self.probe_steps} leaves no update step in "
                              f"train.max_steps={cfg.train.max_steps}; raise max_steps or lower probe_steps")
        if self.temperature <= 0:
            raise ConfigError(f"method.temperature must be positive, got {self.temperature}")
        if self.normalize not in ("mean", "none"):
            raise ConfigError(f"method.normalize must be mean or none; got '{self.normalize}'")
        if not 0 < self.alpha <= 1:
            raise ConfigError(f"method.alpha must be in (0, 1], got {self.alpha}")
        if self.refresh_every <= 0:
            raise ConfigError(f"method.refresh_every must be positive, got {self.refresh_every}")
        if self.overlap == "backward" and not self.probe_in_hook:
            raise ConfigError("method.overlap=backward needs method.probe_in_hook=true: the engine's hooks would "
                              "otherwise update layers during the probe")
        if self.mode not in ("adaptive", "static"):
            raise ConfigError(f"method.mode must be adaptive or static; got '{self.mode}'")
