"""torch.distributed for ``grass train``: DDP (replicas) or FSDP2 (sharded), one node or several.

* :mod:`grass.distributed.context` -- joining the process group (torchrun, submitit), the rank's
  device, the few collectives the training loop needs;
* :mod:`grass.distributed.ddp` -- ``train.parallel=ddp``: DDP rebuilt over the trainable set;
* :mod:`grass.distributed.fsdp` -- ``train.parallel=fsdp``: ``fully_shard`` per decoder layer and
  the root; :mod:`grass.distributed.fsdp_checkpoint` its sharded checkpoints;
* :mod:`grass.distributed.shards` -- local shards of (possibly) sharded tensors, for the code that
  must work on both (optimizers, byte accounting, GRASS's gradient RMS).
"""
from grass.distributed.context import (DEFAULT_TIMEOUT_S, PARALLELS, TIMEOUT_ENV, DistContext, ddp_active,
                                       init_distributed)

__all__ = ["DEFAULT_TIMEOUT_S", "PARALLELS", "TIMEOUT_ENV", "DistContext", "ddp_active", "init_distributed"]
