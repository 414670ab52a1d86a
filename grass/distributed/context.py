"""This process's place in a torch.distributed job: the process group, its device, the collectives.

We do not invent our own distribution: processes are started by ``torchrun`` (which exports
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or by a submitit
multi-task job (``submitit.helpers.TorchDistributedEnvironment`` exports the same variables), and
the process group is initialised with ``env://``: gloo on a CPU, nccl on CUDA, one device per local
rank. :func:`init_distributed` returns a :class:`DistContext` (or None for a single process), which
:func:`grass.train.train` configures with ``train.parallel`` and uses to shard or wrap the model,
skip gradient sync on non-final micro-batches, average scalars and wait for rank 0.

``train.batch_size`` is per process: the global batch is ``batch_size x world_size x grad_accum``.
Every rank reads the same data stream and takes its slice of each global batch; only rank 0
writes config, metrics, result and W&B; every rank resumes from the same checkpoint.

``train.parallel=ddp`` replicates the model (:mod:`grass.distributed.ddp`); ``fsdp`` shards
parameters, gradients and optimizer state (:mod:`grass.distributed.fsdp`).
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
PARALLELS = ("ddp", "fsdp")
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
        parallel: ``ddp`` or ``fsdp`` (set by :meth:`configure` from ``train.parallel``).
        precision: ``train.precision`` (FSDP's mixed precision policy follows it).
    """

    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device, backend: str,
                 owns_group: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device, self.backend = device, backend
        self._owns_group = owns_group
        self.parallel, self.precision = "ddp", "fp32"
        self.wrapped = None  # the TrainableSetDDP / ShardedModel of the current run

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
    def configure(self, cfg) -> None:
        """Take ``train.parallel`` and ``train.precision`` from a run config; refuse combinations the
        chosen strategy cannot run (before the run directory exists).

        Raises:
            ConfigError: unknown ``train.parallel``, or an option FSDP does not support.
        """
        if cfg.train.parallel not in PARALLELS:
            raise ConfigError(f"train.parallel must be one of {', '.join(PARALLELS)}; got '{cfg.train.parallel}'")
        self.parallel, self.precision = cfg.train.parallel, cfg.train.precision
        if self.sharded:
            from grass.distributed.fsdp import check_supported

            check_supported(cfg)

    @property
    def sharded(self) -> bool:
        """Whether parameters are sharded over the ranks (``train.parallel=fsdp``)."""
        return self.parallel == "fsdp"

    def shard(self, model: nn.Module) -> nn.Module:
        """FSDP only: ``fully_shard`` every decoder layer and the root, in place (see
        :func:`grass.distributed.fsdp.shard_model`). Call before building the optimizer."""
        from grass.distributed.fsdp import shard_model

        return shard_model(model, self)

    def wrap(self, model: nn.Module):
        """The model to run forward/backward through: DDP over the currently trainable parameters,
        or, under FSDP, the sharded model behind a check that all ranks train the same set."""
        if self.sharded:
            from grass.distributed.fsdp import ShardedModel

            self.wrapped = ShardedModel(model, self)
        else:
            from grass.distributed.ddp import TrainableSetDDP

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
        """Wait until every rank gets here."""
        if self.backend == "nccl":
            tdist.barrier(device_ids=[self.device.index])
        else:
            tdist.barrier()


def trainable_key(module: nn.Module) -> tuple[int, ...]:
    """Positions of the parameters that require grad now (``module.parameters()`` visits them in
    the same order on every rank, tied ones once)."""
    return tuple(i for i, p in enumerate(module.parameters()) if p.requires_grad)


def check_same_trainable(module: nn.Module, key: tuple[int, ...], ctx: DistContext) -> None:
    """Raise unless every rank trains the same parameters (one all-reduce of a flag per tensor).

    Raises:
        RuntimeError: naming a few parameters the ranks disagree on.
    """
    params = list(module.parameters())
    flags = torch.zeros(len(params), dtype=torch.int32)
    flags[list(key)] = 1
    total = ctx.sum(flags)
    bad = ((total != 0) & (total != ctx.world_size)).nonzero().flatten().tolist()
    if bad:
        names = [n for i, (n, _) in enumerate(module.named_parameters()) if i in set(bad[:5])]
        raise RuntimeError(f"ranks disagree on which parameters are trainable ({len(bad)} differ, e.g. "
                           f"{', '.join(names)}); layer sampling must be seeded identically on every rank")


def init_distributed(train_device: str = "auto", timeout_s: float | None = None) -> DistContext | None:
    """A :class:`DistContext` when this process is one of several, else None.

    * under ``torchrun`` (or any launcher exporting ``RANK``/``WORLD_SIZE``/``MASTER_*``):
      ``WORLD_SIZE > 1`` joins the process group (DDP or FSDP is chosen by ``train.parallel``);
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
