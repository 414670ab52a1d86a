"""FSDP2 for ``grass train`` (``train.parallel=fsdp``): parameters, gradients and optimizer state
sharded over the ranks, for models larger than one device.

Layout: one ``fully_shard`` unit per decoder layer and one for the root (embeddings, final norm,
LM head; with PEFT, the base transformers model under the ``PeftModel``), on a 1-D mesh over all
ranks. Every parameter becomes a ``DTensor`` sharded on dim 0; forward and backward all-gather one
unit at a time, backward reduce-scatters its gradients, and the optimizer updates the local shards
only, so weights, gradients and optimizer state per rank fall as ``1 / world_size``.

Why this works for the layer-wise methods without re-wrapping (unlike DDP, see
:class:`grass.distributed.ddp.TrainableSetDDP`): FSDP2 shards *per parameter* and decides at
every backward which parameters have a gradient to reduce-scatter; a frozen parameter is simply
skipped, frozen and trainable parameters may share a unit, and ``requires_grad`` may change
between steps. Two things need care, handled by :class:`ShardedModel`:

* FSDP2 fixes a unit's reduce dtype from the parameters trainable at its lazy init (the first
  forward). Under ``train.precision=bf16`` a unit frozen then would later reduce-scatter bf16
  gradients into fp32 parameters (an error). So the mixed-precision dtypes are re-derived
  whenever the trainable set changes (a private FSDP2 call, ``FSDPParamGroup._init_mp_dtypes``).
* all ranks must switch to the same trainable set (checked at every change, as under DDP).

Gradient accumulation reduce-scatters every micro-batch instead of skipping the sync on the
non-final ones: FSDP2's ``no_sync`` equivalent keeps the *unsharded* gradient of every unit
until the last micro-batch, i.e. a full model's gradients per rank, which is what FSDP is for
avoiding. The cost is one reduce-scatter per unit per micro-batch.

Mixed precision follows ``train.precision``: ``bf16`` all-gathers parameters in bf16 and
reduce-scatters gradients in fp32 (``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``),
with the training loop's autocast on top; ``fp32`` casts nothing.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from grass.distributed.context import DistContext, check_same_trainable, trainable_key
from grass.errors import ConfigError
from grass.layers import find_layers, unwrap_model

log = logging.getLogger(__name__)
ADAPTER_METHODS = ("lora", "dora")


def check_supported(cfg) -> None:
    """Refuse, in one line, the options FSDP cannot run.

    Raises:
        ConfigError: the option and what to use instead.
    """
    name, save = cfg.method.name, cfg.train.save_model
    if save == "full" and name in ADAPTER_METHODS:
        raise ConfigError(f"train.save_model=full merges the {name} adapters into a copy of the model, which "
                          "train.parallel=fsdp cannot make of a sharded model; use train.save_model=adapter (merge "
                          "afterwards with PEFT's merge_and_unload) or train.parallel=ddp")
    if save == "adapter" and name not in ADAPTER_METHODS:
        raise ConfigError(f"train.save_model=adapter needs an adapter method (lora, dora), not '{name}'")
    if getattr(cfg.method, "overlap", "step") == "backward":
        raise ConfigError("method.overlap=backward is not supported under train.parallel=fsdp; use "
                          "method.overlap=step")
    if cfg.eval.lm_eval:
        raise ConfigError("eval.lm_eval=true is not supported under train.parallel=fsdp (lm-eval would run a "
                          "sharded model on one rank); evaluate the saved model afterwards with `grass eval`")


def mixed_precision(precision: str):
    """The ``MixedPrecisionPolicy`` of ``train.precision`` (see the module docstring)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``fully_shard`` each decoder layer, then the root, in place.

    Parameters are moved to ``ctx.device`` unit by unit as they are sharded, so a model that does
    not fit one device can be sharded from host memory. Call after the method's ``prepare`` (PEFT
    adapters injected, trainability set) and before building the optimizer: the parameters are
    replaced by new ``DTensor`` parameters (``requires_grad`` kept).

    Returns:
        ``model`` (the same object, now sharded).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    mp = mixed_precision(ctx.precision)
    lmap = find_layers(model)
    for layer in lmap.layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(unwrap_model(model), mesh=mesh, mp_policy=mp)
    log.info("FSDP: %d decoder layers + root sharded over %d ranks (%s, precision %s)", len(lmap), ctx.world_size,
             ctx.device.type, ctx.precision)
    return model


def refresh_mixed_precision(model: nn.Module) -> None:
    """Re-derive every FSDP unit's reduce/original dtype from the parameters trainable now.

    FSDP2 (torch 2.13) computes them once, at lazy init, from the parameters that required grad
    then; a unit frozen at that moment keeps ``None`` and would reduce-scatter in the compute
    dtype and assign bf16 gradients to fp32 parameters. ``FSDPParamGroup.lazy_init`` re-runs the
    same computation when called again; this is that part of it.
    """
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            for group in m._get_fsdp_state()._fsdp_param_groups:
                group._init_mp_dtypes()


class ShardedModel:
    """The FSDP-sharded model as the training loop calls it.

    At every forward it compares the trainable set with the previous one (a pass over the
    ``requires_grad`` flags); on a change it checks that every rank trains the same parameters and
    refreshes FSDP's mixed-precision dtypes (:func:`refresh_mixed_precision`). Trainability must
    only change between optimizer steps (where LISA and GRASS switch).

    Attributes:
        changes: how many trainable sets were seen (1 for a fixed set).
    """

    def __init__(self, module: nn.Module, ctx: DistContext):
        self.module, self.ctx = module, ctx
        self._key: tuple[int, ...] | None = None
        self.changes = 0

    def _follow_trainable_set(self) -> None:
        key = trainable_key(self.module)
        if key == self._key:
            return
        check_same_trainable(self.module, key, self.ctx)
        refresh_mixed_precision(self.module)
        self._key = key
        self.changes += 1
        log.debug("FSDP: trainable set changed (%d parameter tensors)", len(key))

    def __call__(self, *args, **kwargs):
        self._follow_trainable_set()
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Gradients are reduce-scattered on every micro-batch (see the module docstring): a no-op."""
        yield


def save_full_model(model: nn.Module, out_dir: Path, ctx: DistContext) -> None:
    """Write the trained model (or a PEFT model's adapters) in Hugging Face format from rank 0.

    Every rank takes part in gathering the full state dict, which lands on rank 0's host memory
    (``full_state_dict=True, cpu_offload=True``); rank 0 then calls ``save_pretrained`` with it
    (a ``PeftModel`` keeps only its adapter weights, as ``train.save_model=adapter`` does).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if ctx.rank == 0:
        model.save_pretrained(str(out_dir), state_dict=state)
    ctx.barrier()
