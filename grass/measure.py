"""Measurements every run records: exact byte accounting by device, peak memory, speed.

Byte accounting is exact (it sums ``numel * element_size`` of real tensors), so it is the same on
every machine and can be checked against the memory model (:mod:`grass.memory.model`). Under FSDP
it counts this rank's local shards of ``DTensor`` s: the bytes per rank.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from grass.distributed.shards import local_tensor

GIB = 1024 ** 3


def _tensor_bytes(t: torch.Tensor) -> int:
    t = local_tensor(t)  # a sharded tensor occupies only its local shard on this rank
    return t.numel() * t.element_size()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer | None, train_device: torch.device | str) -> dict[str, int]:
    """Bytes of optimizer state on the training device and in host memory.

    An optimizer that moves state around (the offload engine) reports itself through
    ``state_bytes() -> {"device": n, "host": n}``. For any other optimizer its state tensors are
    summed by where they live. On a CPU-only run the CPU is the training device, so nothing is
    "host".
    """
    if optimizer is None:
        return {"device": 0, "host": 0}
    own = getattr(optimizer, "state_bytes", None)
    if own is not None:
        return dict(own())
    cpu_training = torch.device(train_device).type == "cpu"
    out = {"device": 0, "host": 0}
    seen: set[int] = set()
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v) and id(v) not in seen:
                seen.add(id(v))
                where = "device" if cpu_training or v.device.type != "cpu" else "host"
                out[where] += _tensor_bytes(v)
    return out


def byte_accounting(model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    train_device: torch.device | str = "cpu") -> dict[str, int]:
    """Exact bytes of parameters, gradients and optimizer state (by device).

    Returns:
        ``{"params_bytes", "grads_bytes", "optimizer_state_device_bytes",
        "optimizer_state_host_bytes"}``; tied parameters are counted once; ``step`` scalars count.
    """
    params = {id(p): p for p in model.parameters()}
    state = optimizer_state_bytes(optimizer, train_device)
    return {
        "params_bytes": sum(_tensor_bytes(p) for p in params.values()),
        "grads_bytes": sum(_tensor_bytes(p.grad) for p in params.values() if p.grad is not None),
        "optimizer_state_device_bytes": state["device"],
        "optimizer_state_host_bytes": state["host"],
    }


def peak_device_bytes(device: torch.device) -> int | None:
    """``torch.cuda.max_memory_allocated`` on CUDA; None elsewhere (no allocator statistics)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return None


class Speedometer:
    """Tokens/s and step times; the first ``skip`` steps (warm-up, probe) are left out of medians."""

    def __init__(self, device: torch.device):
        self.device = device
        self.step_times: list[float] = []
        self.tokens = 0
        self.time = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._t0 = time.perf_counter()

    def stop(self, tokens: int, count: bool = True) -> float:
        """End a step that processed ``tokens`` tokens; return its duration in seconds."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - self._t0
        if count:
            self.step_times.append(dt)
            self.tokens += tokens
            self.time += dt
        return dt

    # None, not 0, when no step was timed (a run of the probe and one update step): no speed was measured.
    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.time if self.time > 0 else None

    @property
    def median_step_s(self) -> float | None:
        return statistics.median(self.step_times) if self.step_times else None


def fix_malloc() -> str:
    """Fix glibc's mmap and trim thresholds for this process, so every method allocates alike.

    glibc serves a large allocation by mmap, and raises that threshold (up to 32 MiB) the first
    time such a block is freed; later allocations of that size then come from the heap without
    page faults, so a method whose first steps allocate more (GRASS's probe without
    checkpointing) allocates faster afterwards. At cpu_repro's config GRASS / LISA - 1 of the
    median step time was -9.3% ± 0.9% with the dynamic threshold and -4.0% ± 1.0% with it fixed
    (8 paired rounds each, 2026-12-04): about half of the gap was the allocator. Fixed at the top
    from the start, every run allocates the same way.
    """
    import ctypes
    import ctypes.util

    m_trim_threshold, m_mmap_threshold = -1, -3
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(m_mmap_threshold, 32 * 2**20) == 1 and libc.mallopt(m_trim_threshold, 2**30) == 1
    except (OSError, AttributeError):  # not glibc
        ok = False
    return "fixed: mmap threshold 32 MiB, trim threshold 1 GiB" if ok else "dynamic (mallopt unavailable)"
