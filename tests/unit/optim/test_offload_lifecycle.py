"""CPU tests of the offload engine's lifecycle defects of issue 15: backward hooks on frozen layers
and on a discarded optimizer, loading state without fp32 masters, pinned host memory's release
and the CUDA last error (the CUDA side of the last two is in tests/gpu/test_offload_hazards.py)."""
from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F

from grass.optim import host_memory
from grass.optim.offload import LayerwiseOffloadAdamW
# the tiny stack (embedding, 4 residual Linear "layers", head) of the engine's AdamW-equivalence tests
from tests.unit.optim.test_offload import HP, V, Tiny, make_model, units_of


def forward_backward(m: Tiny, t: int) -> None:
    g = torch.Generator().manual_seed(t)
    ids, tgt = torch.randint(0, V, (2, 6), generator=g), torch.randint(0, V, (2, 6), generator=g)
    F.cross_entropy(m(ids).float().reshape(-1, V), tgt.reshape(-1)).backward()


def _snapshot(m):
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize("extra", [{}, {"_simulate_offload": True}], ids=["inplace", "staged"])
def test_backward_hooks_attach_to_frozen_layers_and_update_them_once_active(extra):
    m = make_model()
    for layer in m.layers:
        layer.requires_grad_(False)  # what LISA/GRASS's prepare leaves before the optimizer is built
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, overlap="backward", **extra)
    opt.attach_backward_hooks()  # was: RuntimeError, cannot register a hook on a tensor that doesn't require gradient
    assert all(not p.requires_grad for layer in m.layers for p in layer.parameters())  # flags restored
    m.layers[2].requires_grad_(True)  # a switch activates layer 2
    before = _snapshot(m)
    forward_backward(m, 0)
    assert all(p.grad is None for p in m.parameters())  # updated and freed during backward
    changed = [not torch.equal(a, b) for a, b in zip(before, m.parameters())]
    names = [n for n, _ in m.named_parameters()]
    assert {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("layers") else "")
            for n, c in zip(names, changed) if c} == {"embed", "layers.2", "head"}


def test_a_discarded_optimizer_no_longer_updates_through_its_hooks():
    m = make_model()
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, overlap="backward")
    opt.attach_backward_hooks()
    forward_backward(m, 0)
    assert all(p.grad is None for p in m.parameters())  # alive: the hooks updated everything
    del opt
    gc.collect()
    before = _snapshot(m)
    forward_backward(m, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert all(p.grad is not None for p in m.parameters())  # nobody consumed the gradients either
    for p in m.parameters():  # and the hooks themselves are gone, not merely idle
        assert not p._post_accumulate_grad_hooks


def _bf16_model_trained_by_torch_adamw(steps=3):
    m = make_model(torch.bfloat16)
    ref = torch.optim.AdamW(m.parameters(), **HP, foreach=False)
    for t in range(steps):
        forward_backward(m, t)
        ref.step()
        m.zero_grad(set_to_none=True)
    return m, ref


@pytest.mark.parametrize("source", ["torch_adamw", "engine_bf16_state"])
@pytest.mark.parametrize("extra", [{}, {"_simulate_offload": True}], ids=["inplace", "staged"])
def test_loading_state_without_masters_takes_them_from_the_weights(source, extra):
    m, ref = _bf16_model_trained_by_torch_adamw()
    if source == "torch_adamw":
        sd = ref.state_dict()
    else:  # an engine with offload_fp32_state=false over the same weights and moments
        other = LayerwiseOffloadAdamW(units_of(m), **HP, fp32_state=False, **extra)
        other.load_state_dict(ref.state_dict())
        sd = other.state_dict()
    assert all("master" not in e for e in sd["state"].values())
    weights = _snapshot(m)
    scale = max(w.float().abs().max().item() for w in weights)
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, fp32_state=True, **extra)
    opt.load_state_dict(sd)
    opt.flush()
    for w, p in zip(weights, m.parameters()):
        assert torch.equal(opt.state[p]["master"], w.float())  # the weights, not zeros
    forward_backward(m, 3)
    opt.step()
    # One AdamW step moves each weight by about lr at most; a zero master would have replaced the
    # weights by about +-lr (the issue: max |w| 3.4 -> 0.001).
    for w, p in zip(weights, m.parameters()):
        assert (p.detach().float() - w.float()).abs().max().item() <= 2 * HP["lr"] + 1e-2 * scale
    assert max(p.detach().float().abs().max().item() for p in m.parameters()) > 0.5 * scale


class _FakeCudart:
    def __init__(self, register_error=0):
        self.register_error, self.calls = register_error, []

    def cudaHostRegister(self, ptr, size, flags):
        self.calls.append("register")
        return self.register_error

    def cudaHostUnregister(self, ptr):
        self.calls.append("unregister")
        return 0


class _Fence(host_memory.CopyFence):
    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def wait(self):
        self.calls.append("wait")


def test_failed_host_register_clears_the_cuda_error_and_falls_back(monkeypatch):
    fake = _FakeCudart(register_error=712)  # cudaErrorHostMemoryAlreadyRegistered
    cleared = []
    monkeypatch.setattr(torch.cuda, "cudart", lambda: fake)
    monkeypatch.setattr(host_memory, "clear_last_cuda_error", lambda: cleared.append(True) or 712)
    monkeypatch.setattr(host_memory, "_pinned_fallback", lambda n, dtype: torch.full((n,), 7.0, dtype=dtype))
    t = host_memory.pinned_zeros(10, torch.float32)
    assert cleared == [True] and fake.calls == ["register"]
    assert torch.equal(t, torch.full((10,), 7.0))  # torch's pinned allocator took over


def test_registered_host_memory_waits_for_pending_copies_before_release(monkeypatch):
    fake = _FakeCudart()
    monkeypatch.setattr(torch.cuda, "cudart", lambda: fake)
    t = host_memory.pinned_zeros(10, torch.float32, _Fence(fake.calls))
    view = t[2:5]
    del t
    gc.collect()
    assert fake.calls == ["register"]  # a view still uses the memory: nothing released
    del view
    gc.collect()
    assert fake.calls == ["register", "wait", "unregister"]  # the copy stream first, then unregister


def test_clear_last_cuda_error_without_a_cuda_runtime():
    # CPU-only torch: no libcudart is loaded, so there is nothing to clear (and nothing raises).
    if torch.cuda.is_available():
        pytest.skip("a CUDA runtime is loaded here; tests/gpu covers it")
    assert host_memory.clear_last_cuda_error() == -1
