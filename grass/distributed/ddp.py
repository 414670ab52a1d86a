"""DDP for ``grass train`` (``train.parallel=ddp``): replicas, gradients all-reduced.

Layer-wise methods (LISA, GRASS) change which parameters are trainable between periods. See
:class:`TrainableSetDDP` for how DDP follows those changes.
"""
from __future__ import annotations

import contextlib
import logging

from torch import nn

from grass.distributed.context import DistContext, check_same_trainable, trainable_key

log = logging.getLogger(__name__)


class TrainableSetDDP:
    """DDP over the parameters trainable *now*, rebuilt whenever that set changes.

    Why a rebuild. DDP decides at construction which parameters it synchronises: it registers its
    autograd hooks and lays out its gradient buckets for the parameters with ``requires_grad=True``
    at that moment, and expects a gradient for each of them in every synced backward. LISA and GRASS
    toggle ``requires_grad`` between periods (and GRASS's probe trains every decoder layer but not
    the embeddings). With one DDP built at step 0, a layer that becomes trainable later has no hook
    and is *silently not all-reduced* (every rank steps with its own local gradient and the replicas
    drift apart), and a layer that stops training leaves its bucket waiting ("Expected to have
    finished reduction in the prior iteration").

    Alternatives considered:

    * one DDP over every parameter (all ``requires_grad`` at construction) with
      ``find_unused_parameters=True``: correct, but buckets for the whole model (a full-model
      gradient buffer, the memory LISA/GRASS exist to avoid), every bucket all-reduced every step
      (zeros for frozen layers: full fine-tuning's traffic), and an autograd-graph walk per step.
      ``skip_all_reduce_unused_params`` trims the traffic, not the buffers or the walk;
    * ``static_graph=True``: requires the same used parameters in every iteration, which a switch
      breaks;
    * all-reducing ``.grad`` by hand after backward: correct but serial (no overlap of
      communication with backward) and a re-implementation of DDP.

    Rebuilding keeps DDP's overlap, buckets and traffic proportional to the *trainable* parameters,
    and needs ``find_unused_parameters=False`` (each period's trainable parameters are all used in
    every forward). Its cost is one DDP construction per switch (every ``switch_every`` steps): no
    parameter broadcast after the first build (``init_sync=False``: the replicas are identical, since
    every rank applies the same all-reduced update), a cross-rank check that every rank switched to
    the same set (one all-reduce of a flag per parameter) and the bucket allocation. The change is
    detected here, at every forward (a pass over ``requires_grad`` flags), so no method has to
    remember to signal it, resume included; trainability must only change between optimizer steps
    (which is where LISA and GRASS switch).

    ``gradient_as_bucket_view=True`` makes the gradients views of DDP's buckets, so DDP adds no
    second copy of the gradients (GRASS's probe relies on this, see :mod:`grass.method.grass`).
    Buffers are not re-broadcast at each forward (``forward_sync_buffers=False``): the models here
    have only deterministic buffers (rotary frequencies).
    """

    def __init__(self, module: nn.Module, ctx: DistContext):
        self.module = module
        self.ctx = ctx
        self._ddp: nn.Module | None = None
        self._key: tuple[int, ...] | None = None
        self._synced = False  # whether a DDP build has broadcast rank 0's weights yet
        self.builds = 0
        self.current()  # the first build broadcasts rank 0's weights (init_sync)

    def current(self) -> nn.Module | None:
        """The DDP module for the current trainable set (None when nothing is trainable)."""
        key = trainable_key(self.module)
        if key == self._key:
            return self._ddp
        check_same_trainable(self.module, key, self.ctx)
        self._ddp = None  # drop the old buckets before allocating new ones
        if key:
            from torch.nn.parallel import DistributedDataParallel

            dev = self.ctx.device
            self._ddp = DistributedDataParallel(
                self.module, device_ids=[dev.index] if dev.type == "cuda" else None,
                init_sync=not self._synced, find_unused_parameters=False, gradient_as_bucket_view=True,
                forward_sync_buffers=False)
            self._synced = True
            self.builds += 1
        self._key = key
        log.debug("DDP rebuilt over %d trainable parameter tensors (build %d)", len(key), self.builds)
        return self._ddp

    def __call__(self, *args, **kwargs):
        ddp = self.current()
        return (ddp if ddp is not None else self.module)(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        ddp = self.current()
        if ddp is None:
            yield
        else:
            with ddp.no_sync():
                yield
