"""Page-locked host memory for the offload engine's state, and the CUDA runtime's error state.

Two hazards of registering plain host memory with ``cudaHostRegister`` (issue 15):

* a failed runtime call leaves its error as the thread's *last error*; torch checks that value
  after its next kernel launch (``C10_CUDA_KERNEL_LAUNCH_CHECK``) and would report it as the
  failure of an unrelated operation. torch's ``cudart()`` bindings have no ``cudaGetLastError``,
  so :func:`clear_last_cuda_error` calls it in the runtime library torch has loaded.
* the copy stream may still be transferring into or out of a buffer when its tensor is
  collected (an optimizer discarded mid-step, a failed run). Unregistering and freeing it then
  lets the DMA touch freed memory. Every registered buffer is released by a finalizer that first
  waits on its :class:`CopyFence`, the copy stream's completion.
"""
from __future__ import annotations

import ctypes
import logging
import os
import weakref

import torch

log = logging.getLogger(__name__)
_CUDART_NAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so")
_cudart_lib = None


class CopyFence:
    """The copy stream a host buffer's transfers run on; :meth:`wait` returns when they are done.

    Args:
        stream: a ``torch.cuda.Stream``, or None (nothing asynchronous: CPU-only or simulated).
    """

    def __init__(self, stream=None):
        self.stream = stream

    def wait(self) -> None:
        """Block until every transfer queued so far on the copy stream has completed."""
        if self.stream is not None:
            self.stream.synchronize()


def _loaded_cudart():
    """The CUDA runtime library torch has loaded (never a second copy), or None."""
    global _cudart_lib
    if _cudart_lib is not None:
        return _cudart_lib
    paths = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "libcudart" in line and "/" in line})
    except OSError:
        pass
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_NOW", 0)  # only an already-loaded library
    for name in [*paths, *_CUDART_NAMES]:
        try:
            _cudart_lib = ctypes.CDLL(name, mode=mode)
            return _cudart_lib
        except OSError:
            continue
    return None


def clear_last_cuda_error() -> int:
    """Reset the calling thread's CUDA "last error" (``cudaGetLastError``) and return what it was.

    Returns:
        The cleared error code (0: none); -1 when the runtime library could not be found (torch
        linked statically): then nothing could be cleared.
    """
    lib = _loaded_cudart()
    if lib is None:
        log.debug("libcudart not found among the loaded libraries; cannot clear the CUDA last error")
        return -1
    return int(lib.cudaGetLastError())


def host_register(t: torch.Tensor) -> bool:
    """Page-lock ``t``'s memory with ``cudaHostRegister``; on failure clear the error it leaves.

    Returns:
        Whether the memory is now registered.
    """
    try:
        cudart = torch.cuda.cudart()
        err = int(cudart.cudaHostRegister(t.data_ptr(), t.numel() * t.element_size(), 0))
    except (AssertionError, AttributeError, RuntimeError):  # no CUDA runtime bindings
        return False
    if err != 0:
        clear_last_cuda_error()
        log.debug("cudaHostRegister failed (error %d); falling back to torch's pinned allocator", err)
    return err == 0


def _release(cudart, ptr: int, fence: CopyFence) -> None:
    try:
        fence.wait()  # no transfer may still read or write the memory once it is unregistered and freed
        if int(cudart.cudaHostUnregister(ptr)) != 0:
            clear_last_cuda_error()
    except RuntimeError as e:  # CUDA already torn down (interpreter exit): the process frees it all
        log.debug("releasing pinned host memory: %s", e)


def pinned_zeros(numel: int, dtype: torch.dtype, fence: CopyFence | None = None) -> torch.Tensor:
    """A zeroed host tensor in page-locked memory of exactly its size.

    ``torch.zeros(..., pin_memory=True)`` goes through torch's caching host allocator, which
    rounds every block up to a power of two (pytorch/pytorch#171662): a 2.4 GB LLaMA2-7B layer
    would pin 4 GiB. So plain host memory is registered with ``cudaHostRegister`` instead; when
    the tensor is collected, a finalizer waits on ``fence`` (the copy stream) and unregisters it,
    before the memory is freed. If registration fails, torch's pinned allocator is used (it tracks
    pending copies itself).

    Args:
        numel, dtype: the tensor.
        fence: what pending transfers to wait for before the memory is released.
    """
    t = torch.zeros(numel, dtype=dtype)
    if t.numel() == 0:
        return t
    if not host_register(t):
        return _pinned_fallback(numel, dtype)
    # Runs when the tensor object is collected, before its memory is freed (views keep the
    # storage alive, never the registration: a copy from it is then merely synchronous).
    weakref.finalize(t, _release, torch.cuda.cudart(), t.data_ptr(), fence or CopyFence())
    return t


def _pinned_fallback(numel: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(numel, dtype=dtype, pin_memory=True)
