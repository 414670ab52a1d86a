"""Range checks of config values that OmegaConf's types cannot express, called by
:func:`grass.config.validate`.

Each catches a value that would otherwise surface as a traceback from deep inside a library
(``np.random.seed(-1)``, ``torch.optim.AdamW(betas=(1.5, ...))``, ``torch.device("gpu")``) or as
silently wrong training (a negative clipping norm flips the gradient; ``lr=nan``).
"""
from __future__ import annotations

import dataclasses
import math
import re

from grass.errors import ConfigError

DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def _require(key: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {expected}, got {value}")


def _finite_floats(obj, prefix: str = "") -> None:
    """Every float field (nested sections included) is a finite number: NaN and inf pass every
    ``<=`` check, so they would slip through the range checks below."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _finite_floats(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}{f.name} must be a finite number, got {value}")


def check_ranges(cfg) -> None:
    """Raise :class:`ConfigError` naming the first field whose value is out of range.

    Args:
        cfg: a :class:`grass.config.RunConfig` whose types OmegaConf already checked.
    """
    _finite_floats(cfg)
    # numpy's seed is an unsigned 32-bit integer
    _require("seed", cfg.seed, 0 <= cfg.seed < 2 ** 32, "in [0, 2**32)")
    m = cfg.data.max_examples
    _require("data.max_examples", m, m is None or m > 0, "positive or null")
    t = cfg.train
    # one token of prompt and one of response: with less, no token carries loss
    _require("train.seq_len", t.seq_len, t.seq_len >= 2, "at least 2")
    _require("train.weight_decay", t.weight_decay, t.weight_decay >= 0, ">= 0")
    for key in ("adam_beta1", "adam_beta2"):
        v = getattr(t, key)
        _require(f"train.{key}", v, 0 <= v < 1, "in [0, 1)")
    _require("train.adam_eps", t.adam_eps, t.adam_eps > 0, "positive")
    _require("train.min_lr_ratio", t.min_lr_ratio, 0 <= t.min_lr_ratio <= 1, "in [0, 1]")
    _require("train.max_grad_norm", t.max_grad_norm, t.max_grad_norm >= 0, ">= 0 (0 disables clipping)")
    _require("train.checkpoint_every", t.checkpoint_every, t.checkpoint_every >= 0, ">= 0 (0: only on preemption)")
    _require("train.device", repr(t.device), DEVICE.fullmatch(t.device) is not None, "auto, cpu, mps, cuda or cuda:N")
    e = cfg.eval
    _require("eval.batch_size", e.batch_size, e.batch_size > 0, "positive")
    _require("eval.max_new_tokens", e.max_new_tokens, e.max_new_tokens is None or e.max_new_tokens > 0,
             "positive or null")
