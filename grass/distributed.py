"""torch.distributed for ``grass train``: data parallelism (DDP) on one node or across nodes.

We do not invent our own distribution: processes are started by ``torchrun`` (which exports
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or by a submitit
multi-task job (``submitit.helpers.TorchDistributedEnvironment`` exports the same variables), and
the process group is initialised with ``env://``: gloo on a CPU, nccl on CUDA, one device per local
rank. :func:`init_distributed` returns a :class:`DistContext` (or None for a single process), which
:func:`grass.train.train` uses to wrap the model, skip gradient sync on non-final micro-batches,
average scalars and wait for rank 0.

``train.batch_size`` is per process: the global batch is ``batch_size x world_size x grad_accum``.
Every rank reads the same data stream and takes its slice of each global batch; only rank 0
writes config, metrics, result, checkpoints and W&B; every rank resumes from the same checkpoint.

Layer-wise methods (LISA, GRASS) change which parameters are trainable between periods. See
:class:`TrainableSetDDP` for how DDP follows those changes.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os

import torch
import torch.distributed as tdist
from torch import nn

from grass.errors import ConfigError

log = logging.getLogger(__name__)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Collective timeout. The other ranks wait at a barrier while rank 0 evaluates and saves the model,
# which can take far longer than torch's defaults (10 min for nccl, 30 for gloo).
DEFAULT_TIMEOUT_S = 2 * 3600
TIMEOUT_ENV = "GRASS_DIST_TIMEOUT_S"


def ddp_active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def _pick_device(train_device: str, local_rank: int) -> torch.device:
    """The device of this rank: the CPU, or the GPU of its local rank.

    ``train.device`` keeps its meaning (``cpu`` forces the CPU, ``auto`` takes a GPU when there is
    one); an explicit ``cuda:N`` is replaced by the local rank's GPU, since every rank would
    otherwise share GPU N. When the launcher already restricted each task to one GPU
    (``CUDA_VISIBLE_DEVICES`` or SLURM's GPU binding), that GPU is ``cuda:0``.
    """
    if train_device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if train_device == "auto":
            return torch.device("cpu")
        raise ConfigError(f"train.device={train_device} but no CUDA device is visible; use train.device=auto or cpu")
    n = torch.cuda.device_count()
    if n == 1:
        return torch.device("cuda", 0)
    if local_rank >= n:
        raise ConfigError(f"local rank {local_rank} has no GPU of its own: this node shows {n} GPUs; start at most "
                          f"{n} processes per node (torchrun --nproc_per_node, submitit tasks_per_node)")
    return torch.device("cuda", local_rank)


class DistContext:
    """This process's place in a torch.distributed job, and the few collectives training needs.

    Attributes:
        rank, world_size, local_rank: from the launcher's environment.
        device: this rank's device (the CPU, or the GPU of its local rank).
        backend: ``gloo`` (CPU) or ``nccl`` (CUDA).
    """

    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device, backend: str,
                 owns_group: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device, self.backend = device, backend
        self._owns_group = owns_group
        self.wrapped: TrainableSetDDP | None = None

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, train_device: str = "auto", timeout_s: float | None = None) -> "DistContext":
        """Join the process group described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_*``.

        A process group that is already initialised (e.g. by the caller) is reused as is.
        ``timeout_s`` (default ``$GRASS_DIST_TIMEOUT_S``, else 2 h) bounds every collective.
        """
        missing = [v for v in TORCHRUN_VARS if v not in os.environ]
        if missing:
            raise ConfigError(f"torch.distributed needs the environment variables {', '.join(missing)}; "
                              "start the processes with torchrun or a submitit multi-task job")
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = _pick_device(train_device, local_rank)
        backend = "nccl" if device.type == "cuda" else "gloo"
        owns = False
        if not tdist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            if timeout_s is None:
                timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
            tdist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                     timeout=datetime.timedelta(seconds=timeout_s))
            owns = True
        elif tdist.get_world_size() != world or tdist.get_rank() != rank:
            raise RuntimeError(f"the initialised process group (rank {tdist.get_rank()} of {tdist.get_world_size()}) "
                               f"does not match RANK={rank} WORLD_SIZE={world}")
        else:
            backend = tdist.get_backend()
        ctx = cls(rank, world, local_rank, device, backend, owns_group=owns)
        log.debug("rank %d of %d (local %d) on %s, backend %s", rank, world, local_rank, device, backend)
        return ctx

    @classmethod
    def from_submitit(cls, train_device: str = "auto", timeout_s: float | None = None) -> "DistContext":
        """Join the process group of the current submitit job (one process per task).

        submitit's helper exports ``MASTER_ADDR`` (the first node), ``MASTER_PORT`` (derived from
        the job id, or ``$MASTER_PORT``), ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``. It is told not to
        touch ``CUDA_VISIBLE_DEVICES``: :func:`_pick_device` handles both a task that sees every GPU
        of its node and one bound to a single GPU.
        """
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        return cls.from_env(train_device, timeout_s)

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        self.wrapped = None
        if self._owns_group and tdist.is_initialized():
            tdist.destroy_process_group()
            self._owns_group = False

    def __repr__(self) -> str:
        return f"DistContext(rank={self.rank}, world_size={self.world_size}, device={self.device}, {self.backend})"

    # -- what train() uses -----------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> "TrainableSetDDP":
        """The model to run forward/backward through: DDP over the currently trainable parameters."""
        self.wrapped = TrainableSetDDP(model, self)
        return self.wrapped

    def no_sync(self, ddp_model):
        """Context for a non-final micro-batch: gradients accumulate locally, no all-reduce."""
        if hasattr(ddp_model, "no_sync"):
            return ddp_model.no_sync()
        return contextlib.nullcontext()

    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device) if self.backend == "nccl" else t.cpu()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``t`` over ranks (a new tensor, on ``t``'s device and dtype)."""
        work = self._comm(t.detach().clone())
        tdist.all_reduce(work, op=tdist.ReduceOp.SUM)
        return work.to(device=t.device, dtype=t.dtype)

    def mean(self, x: float) -> float:
        """Mean of a Python float over ranks."""
        t = self._comm(torch.tensor([float(x)], dtype=torch.float64))
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any rank (e.g. a preemption signal seen by one task)."""
        t = self._comm(torch.tensor([1.0 if flag else 0.0]))
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.backend == "nccl":
            tdist.barrier(device_ids=[self.device.index])
        else:
            tdist.barrier()


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

    def _trainable(self) -> tuple[int, ...]:
        # module.parameters() visits parameters in the same order on every rank (tied ones once).
        return tuple(i for i, p in enumerate(self.module.parameters()) if p.requires_grad)

    def _check_same_on_all_ranks(self, key: tuple[int, ...]) -> None:
        params = list(self.module.parameters())
        flags = torch.zeros(len(params), dtype=torch.int32)
        flags[list(key)] = 1
        total = self.ctx.sum(flags)
        bad = ((total != 0) & (total != self.ctx.world_size)).nonzero().flatten().tolist()
        if bad:
            names = [n for i, (n, _) in enumerate(self.module.named_parameters()) if i in set(bad[:5])]
            raise RuntimeError(f"ranks disagree on which parameters are trainable ({len(bad)} differ, e.g. "
                               f"{', '.join(names)}); layer sampling must be seeded identically on every rank")

    def current(self) -> nn.Module | None:
        """The DDP module for the current trainable set (None when nothing is trainable)."""
        key = self._trainable()
        if key == self._key:
            return self._ddp
        self._check_same_on_all_ranks(key)
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


def init_distributed(train_device: str = "auto", timeout_s: float | None = None) -> DistContext | None:
    """A :class:`DistContext` when this process is one of several, else None.

    * under ``torchrun`` (or any launcher exporting ``RANK``/``WORLD_SIZE``/``MASTER_*``):
      ``WORLD_SIZE > 1`` starts DDP;
    * in a submitit job (``$SUBMITIT_EXECUTOR`` set) with more than one task: submitit's
      ``TorchDistributedEnvironment`` provides the same variables.
    """
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        if int(os.environ["WORLD_SIZE"]) > 1:
            return DistContext.from_env(train_device, timeout_s)
        return None
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        if submitit.JobEnvironment().num_tasks > 1:
            return DistContext.from_submitit(train_device, timeout_s)
    return None
