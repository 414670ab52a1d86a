"""CUDA hazards of the offload engine found by reading (issue 15); skipped without CUDA.

1. A failed ``cudaHostRegister`` leaves the runtime's last error set; torch's next kernel-launch
   check would report it as the failure of an unrelated operation.
2. Registered host buffers must not be unregistered and freed while copy-stream transfers into or
   out of them are pending (an optimizer discarded right after a step).
3. Backward hooks must not keep a discarded optimizer alive and updating.

Timing is provoked with ``torch.cuda._sleep`` on the copy stream; the checks are on states
(``Stream.query()``, values), never on wall-clock time. CPU halves of these tests are in
tests/unit/optim/test_offload_lifecycle.py.
"""
from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from grass.optim import host_memory
from grass.optim.offload import LayerwiseOffloadAdamW

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SLEEP_CYCLES = 200_000_000  # ~100 ms of GPU time on the copy stream
HP = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256), nn.Linear(256, 256)).to("cuda", dtype)


def _units(m):
    return [(f"layer.{i}", list(layer.parameters())) for i, layer in enumerate(m)]


def test_failed_host_register_does_not_poison_later_cuda_calls():
    t = torch.zeros(1 << 20)
    assert host_memory.host_register(t)
    try:
        # registering the same range again fails (cudaErrorHostMemoryAlreadyRegistered) ...
        assert not host_memory.host_register(t)
        # ... and leaves no error behind for torch's next launch check to report as its own
        assert host_memory.clear_last_cuda_error() == 0
        x = torch.arange(8, device="cuda", dtype=torch.float32)
        assert float((x * 2).sum()) == 56.0
    finally:
        torch.cuda.cudart().cudaHostUnregister(t.data_ptr())


def test_pinned_zeros_after_a_failed_registration_falls_back_to_pinned_memory(monkeypatch):
    monkeypatch.setattr(host_memory, "host_register", lambda t: False)
    t = host_memory.pinned_zeros(1024, torch.float32)
    assert t.is_pinned() and t.numel() == 1024  # torch's pinned allocator
    torch.ones(4, device="cuda").sum().item()


def test_discarding_the_engine_waits_for_pending_copies_before_freeing_host_memory():
    m = _model()
    opt = LayerwiseOffloadAdamW(_units(m), **HP)
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    opt.step()  # every slot is dirty now
    stream = opt._pipe.copy_stream
    with torch.cuda.stream(stream):
        torch.cuda._sleep(SLEEP_CYCLES)  # the copy stream is busy ...
    for slot in opt._pipe.slots:
        opt._pipe._write_back(slot)  # ... and device->host copies into pinned host buffers are queued
    assert not stream.query()
    del opt
    gc.collect()
    # the host buffers' finalizers waited for the copy stream before unregistering and freeing
    assert stream.query()
    assert host_memory.clear_last_cuda_error() == 0


@pytest.mark.parametrize("chunk_mb", [None, 0.1], ids=["whole", "chunked"])
def test_a_discarded_engine_does_not_update_through_backward_hooks_on_cuda(chunk_mb):
    m = _model(torch.bfloat16)
    for layer in m:
        layer.requires_grad_(False)
    m[1].requires_grad_(True)
    opt = LayerwiseOffloadAdamW(_units(m), **HP, overlap="backward", chunk_mb=chunk_mb)
    opt.attach_backward_hooks()  # frozen layers included (they may be drawn later)
    x = torch.randn(4, 256, device="cuda", dtype=torch.bfloat16)
    before = m[1].weight.detach().clone()
    m(x).float().square().mean().backward()
    assert m[1].weight.grad is None and not torch.equal(before, m[1].weight)  # alive: updated in backward
    del opt
    gc.collect()
    before = [p.detach().clone() for p in m.parameters()]
    m(x).float().square().mean().backward()
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert m[1].weight.grad is not None
