"""BAdam (Luo et al. 2024, "BAdam: A Memory Efficient Full Parameter Optimization Method for Large
Language Models"): block coordinate descent with Adam. One block -- a decoder layer, or the
embeddings / head when included -- is trained at a time and switched every K steps; the Adam state
of the block is dropped at every switch. The optimizer is the ``badam`` package's own
``BlockOptimizer`` (pinned in pyproject.toml), run in our loop with our data, evaluation and
measurements so that it joins the fair comparison. Its schedule is kept as badam has it: a switch
comes when ``(updates + 1) % K == 0`` after an update is counted, so the first block gets K - 1
steps and every later one K.

Three things are added around ``BlockOptimizer`` (:class:`GrassBlockOptimizer`), none of them
changes its update:

* its block list comes from :func:`grass.layers.find_layers` (the same decoder layers LISA and
  GRASS draw from) instead of a regular expression over parameter names;
* ``switch_mode=random`` draws its orders from a generator seeded by the run seed (BAdam draws them
  from torch's global RNG, which also drives dropout and is not part of its state);
* ``state_dict()`` holds the block position (active block, order, step count, generator) and the
  schedule's learning rate, so a checkpointed run resumes exactly (BAdam's own ``state_dict`` is the
  inner Adam's, which has neither).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch
from badam import BlockOptimizer
from torch import nn

from baselines.badam.config import BAdamConfig
from grass.errors import ConfigError
from grass.interface import FinetuneMethod
from grass.layers import find_layers, freeze_all
from grass.optim.adamw import adamw

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet():
    """BlockOptimizer prints (block orders, trainable prefixes) and warns on fp32 weights; send both to the log."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="BAdam expect model to be loaded in fp16/bf16")
        yield
    if out.getvalue().strip():
        log.debug("badam: %s", out.getvalue().strip())


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class GrassBlockOptimizer(BlockOptimizer):
    """``badam.BlockOptimizer``, seeded and resumable (see the module docstring).

    Args:
        base_optimizer, named_parameters_list, block_prefix_list, switch_block_every,
        start_block, switch_mode: as ``BlockOptimizer``.
        seed: seeds the generator of the random block orders.
    """

    def __init__(self, base_optimizer, named_parameters_list, block_prefix_list, *, switch_block_every: int,
                 switch_mode: str, start_block: int | None, seed: int):
        self._generator = torch.Generator().manual_seed(seed)
        self.active_block = self.updated_block = None
        with _quiet(), torch.random.fork_rng(devices=[]):
            # BlockOptimizer draws its first random order from torch's global RNG: hand it
            # our generator's state and take the state back, so the global RNG is untouched.
            torch.set_rng_state(self._generator.get_state())
            super().__init__(base_optimizer, named_parameters_list, block_prefix_list=block_prefix_list,
                             switch_block_every=switch_block_every, start_block=start_block,
                             switch_mode=switch_mode, verbose=0)
            self._generator.set_state(torch.get_rng_state())
        del self.state_dict  # BlockOptimizer binds the inner Adam's state_dict here; ours adds the position

    def switch_trainable_params(self, verbose=None) -> None:
        self.active_block = self.current_block_idx
        super().switch_trainable_params(verbose=0)

    def _update_active_block_idx(self) -> None:
        if self.switch_mode == "random" and not self.block_order:
            self.block_order = torch.randperm(self.block_num, generator=self._generator).tolist()
        super()._update_active_block_idx()

    def step(self, *args, **kwargs):
        self.updated_block = self.active_block  # step() may switch to the next block at its end
        return super().step(*args, **kwargs)

    def state_bytes(self) -> dict[str, int]:
        """Adam moments of the active block plus its fp32 copy (BAdam's master weights), all on the device."""
        n = sum(_tensor_bytes(v) for st in self.base_optimizer.state.values() for v in st.values()
                if torch.is_tensor(v))
        n += sum(_tensor_bytes(p) for p in self.param_idx2hp.values())
        return {"device": n, "host": 0}

    def state_dict(self) -> dict:
        """The inner Adam's state, the outer learning rates, and the block position."""
        return {"base": self.base_optimizer.state_dict(),
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups],
                "block": {"active": self.active_block, "next": self.current_block_idx,
                          "order": list(getattr(self, "block_order", [])), "global_step": self.global_step,
                          "generator": self._generator.get_state()}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Inverse of :meth:`state_dict`; the weights must already be restored (the fp32 copy of
        the active block is taken from them)."""
        b = state_dict["block"]
        self.current_block_idx = b["active"]
        self.switch_trainable_params()
        self.current_block_idx, self.global_step = b["next"], b["global_step"]
        if self.switch_mode == "random":
            self.block_order = list(b["order"])
        self._generator.set_state(b["generator"].cpu())
        self.base_optimizer.load_state_dict(state_dict["base"])
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            group.update(saved)


class BAdam(FinetuneMethod):
    """BAdam through ``badam.BlockOptimizer``: blocks = [embeddings], decoder layers, [head]."""

    name = "badam"
    Config = BAdamConfig

    def __init__(self, cfg: BAdamConfig, run_cfg):
        super().__init__(cfg, run_cfg)
        self.optimizer = None
        self.block_names: list[str] = []

    def prepare(self, model: nn.Module) -> nn.Module:
        lmap = find_layers(model)
        freeze_all(model)  # BlockOptimizer only sets requires_grad on the parameters it is given
        module_names = {id(m): n for n, m in model.named_modules()}
        param_names = {id(p): n for n, p in model.named_parameters()}
        blocks = []  # (name, prefixes BlockOptimizer matches against parameter names, parameters)
        if self.cfg.include_embedding:
            blocks.append(("embed", [param_names[id(p)] for p in lmap.embed_params], list(lmap.embed_params)))
        for i in range(len(lmap)):
            # the trailing dot keeps "model.layers.1." from matching "model.layers.11.*"
            blocks.append((f"layer.{i}", [module_names[id(lmap.layers[i])] + "."], lmap.layer_params(i)))
        if self.cfg.include_lm_head and lmap.head_params:
            blocks.append(("head", [param_names[id(p)] for p in lmap.head_params], list(lmap.head_params)))
        if self.cfg.start_block is not None and self.cfg.start_block >= len(blocks):
            raise ConfigError(f"method.start_block={self.cfg.start_block} but the model has {len(blocks)} blocks; "
                              f"use 0..{len(blocks) - 1}")
        self._blocks, self._param_names = blocks, param_names
        self.block_names = [name for name, _, _ in blocks]
        return model

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        named = [(self._param_names[id(p)], p) for _, _, ps in self._blocks for p in ps]
        base = adamw([p for _, p in named], self.run_cfg.train)
        self.optimizer = GrassBlockOptimizer(base, named, [prefixes for _, prefixes, _ in self._blocks],
                                             switch_block_every=self.cfg.switch_block_every,
                                             switch_mode=self.cfg.switch_mode, start_block=self.cfg.start_block,
                                             seed=self.run_cfg.seed * 7919 + 17)
        return self.optimizer

    @property
    def active(self) -> list[int]:
        """Decoder layers trained at the current step (empty when the block is the embeddings or head)."""
        return self._layers_of(self.optimizer.active_block)

    def _layers_of(self, block: int | None) -> list[int]:
        name = self.block_names[block] if block is not None else ""
        return [int(name.split(".")[1])] if name.startswith("layer.") else []

    def stats(self) -> dict:
        # stats() runs after optimizer.step(), which may already have switched to the next block:
        # report the block this step updated.
        opt = self.optimizer
        block = opt.updated_block if opt.updated_block is not None else opt.active_block
        return {"active_layers": self._layers_of(block), "block": self.block_names[block]}
