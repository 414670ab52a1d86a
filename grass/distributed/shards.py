"""Local shards of tensors that may be sharded (FSDP2 ``DTensor`` parameters and gradients).

Under ``train.parallel=fsdp`` every parameter is a ``DTensor`` sharded on dim 0: this rank holds
rows ``[r * ceil(d0 / N), ...)`` of it. Code that must run unchanged on plain and sharded
parameters (the offload optimizer's flat state, byte accounting, GRASS's gradient RMS) works on
:func:`local_tensor` and combines per-rank partial sums with :func:`sum_over_shards`.
"""
from __future__ import annotations

import torch
import torch.distributed as tdist

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch build without distributed support: nothing can be sharded
    DTensor = ()  # type: ignore[assignment,misc]


def is_sharded(t) -> bool:
    """Whether ``t`` is a ``DTensor`` (a parameter or gradient sharded by FSDP)."""
    return bool(DTensor) and isinstance(t, DTensor)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of ``t`` (``t`` itself when it is a plain tensor).

    The shard shares storage with the parameter: writing into it updates the parameter.
    """
    if is_sharded(t):
        with torch.no_grad():
            return t.to_local()
    return t


def sum_over_shards(values: torch.Tensor, like) -> torch.Tensor:
    """Sum per-rank partial results ``values`` over the ranks that shard the tensors in ``like``.

    Args:
        values: e.g. per-layer sums of squared local gradient entries, on the gradients' device.
        like: the parameters the partial results were computed from; when the first one is a
            ``DTensor``, ``values`` is all-reduced over its device mesh, else returned as is
            (plain or DDP-replicated tensors hold the whole gradient on every rank).

    Returns:
        ``values``, summed in place when sharded.
    """
    first = next(iter(like), None)
    if is_sharded(first) and tdist.is_initialized():
        tdist.all_reduce(values, op=tdist.ReduceOp.SUM, group=first.device_mesh.get_group())
    return values
