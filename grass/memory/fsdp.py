"""FSDP in the memory planner: what one rank of a ``train.parallel=fsdp`` run holds.

FSDP2 shards every parameter on dim 0 over the ``N`` ranks like ``torch.chunk``: each rank but
the last holds ``ceil(rows / N)`` rows, so rank 0 holds the most. Gradients (after the
reduce-scatter) and optimizer state follow the parameter's shard; AdamW's ``step`` counters (one
per tensor) do not shrink. These are what :func:`grass.measure.byte_accounting` reports on rank 0.

On top, while a unit computes, FSDP materialises unsharded copies (:func:`working_set`, an
estimate: it is transient and not in the byte accounting).
"""
from __future__ import annotations

import dataclasses
import math


def shard(t, n: int):
    """Rank 0's shard of a planner :class:`~grass.memory.model.Tensor` over ``n`` ranks."""
    if n == 1:
        return t
    rows = t.rows or t.numel
    per_row = t.numel // rows if rows else 0
    local_rows = min(rows, math.ceil(rows / n))
    return dataclasses.replace(t, numel=local_rows * per_row, rows=local_rows if t.rows else 0)


def shard_all(ts: list, n: int) -> list:
    """:func:`shard` of every tensor."""
    return [shard(t, n) for t in ts]


def working_set(root_bytes: int, layer_bytes: int, grad_unit_bytes: int) -> int:
    """Transient unsharded bytes per rank during forward/backward (an estimate).

    The root unit (embeddings, final norm, head) stays unsharded from forward through backward
    (FSDP2 does not reshard the root after forward); two decoder layers are unsharded at a time
    (the one computing and the one prefetched); the unit whose gradients are being reduced holds
    them unsharded plus the reduce-scatter's input copy.

    Args:
        root_bytes: the root unit's full parameters.
        layer_bytes: one decoder layer's full parameters (adapters included).
        grad_unit_bytes: the full gradients of the largest trainable unit.
    """
    return root_bytes + 2 * layer_bytes + 2 * grad_unit_bytes
