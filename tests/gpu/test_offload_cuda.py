"""CUDA tests of the layer-wise offload engine (issue 4, DESIGN section 2.7); skipped without CUDA.

Covers: device-resident state never above two layers (+ embeddings/head), numbers equal to the
CPU reference, resume, no global synchronize inside ``step()``, and the three stream races
DeepSpeed's offload hit (deepspeedai/DeepSpeed#8186):

1. the device->host write-back must wait for the optimizer's writes;
2. a staging (reload) buffer must not be refilled while an earlier update still reads it;
3. the copy stream must wait for the compute stream before overwriting a staging buffer (the
   buffers come from the compute stream's memory pool).

The races are provoked with ``torch.cuda._sleep`` on the compute stream (through the engine's
``_before_update_hook``) or before the optimizer exists, so a missing stream dependency lets the
copy stream run ahead and shows up as wrong numbers (stale moments, or the NaN that fills every
fresh staging slot), never as a timing assertion.
"""
from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from grass.optim.offload import LayerwiseOffloadAdamW

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

D_IN, D, N_LAYERS, V = 512, 256, 8, 4096
HP = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
SLEEP_CYCLES = 50_000_000  # ~25 ms of GPU time: long enough for the copy stream to run ahead
PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7), (1, 6), (0, 7)]


class Stack(nn.Module):
    """Dense stand-in for a decoder: "embed" and "head" larger than a layer, as in real models."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(D_IN, D)
        self.layers = nn.ModuleList(nn.Linear(D, D) for _ in range(N_LAYERS))
        self.head = nn.Linear(D, V)

    def forward(self, x):
        h = self.embed(x)
        for layer in self.layers:
            h = h + torch.tanh(layer(h))
        return self.head(h)


def make_model(dtype=torch.float32, device="cuda", seed=0) -> Stack:
    torch.manual_seed(seed)
    return Stack().to(device=device, dtype=dtype)


def units_of(m: Stack):
    return [("embed", list(m.embed.parameters())),
            *[(f"layer.{i}", list(l.parameters())) for i, l in enumerate(m.layers)],
            ("head", list(m.head.parameters()))]


def set_active(m: Stack, t: int, all_layers: bool = False) -> None:
    pair = PAIRS[(t // 3) % len(PAIRS)]
    for i, layer in enumerate(m.layers):
        layer.requires_grad_(all_layers or i in pair)


def synth_grads(m: Stack, t: int) -> None:
    """Same gradient values on any device (drawn on the CPU), so engine and reference see equal grads."""
    for k, p in enumerate(m.parameters()):
        if p.requires_grad:
            g = torch.Generator().manual_seed(1000 * t + k)
            p.grad = torch.randn(p.shape, generator=g).to(device=p.device, dtype=p.dtype)
        else:
            p.grad = None


def real_backward(m: Stack, t: int) -> None:
    g = torch.Generator().manual_seed(t)
    x = torch.randn(8, D_IN, generator=g).to(device=m.embed.weight.device, dtype=m.embed.weight.dtype)
    m(x).float().square().mean().backward()


def step_twins(opt, m: Stack, ref: torch.optim.Optimizer, twin: Stack, t: int, all_layers: bool = False) -> None:
    """One real forward/backward and optimizer step of the engine's model and of its torch twin."""
    for mod in (m, twin):
        set_active(mod, t, all_layers)
        real_backward(mod, t)
    opt.step()
    ref.step()
    m.zero_grad(set_to_none=True)
    twin.zero_grad(set_to_none=True)


def state_bytes_of(mod: nn.Module, dtype) -> int:
    per = 3 if dtype in (torch.bfloat16, torch.float16) else 2  # exp_avg, exp_avg_sq (+ master)
    return per * 4 * sum(p.numel() for p in mod.parameters())


class CpuReference:
    """torch.optim.AdamW(foreach=False) on CPU; bf16 through fp32 masters (the engine's contract)."""

    def __init__(self, dtype):
        self.m = make_model(dtype, device="cpu")
        self.params = list(self.m.parameters())
        self.low = dtype != torch.float32
        self.masters = [p.detach().float().clone() for p in self.params] if self.low else self.params
        self.opt = torch.optim.AdamW(self.masters, **HP, foreach=False)

    @torch.no_grad()
    def step(self):
        if self.low:
            for p, w in zip(self.params, self.masters):
                w.grad = None if p.grad is None else p.grad.float()
        self.opt.step()
        if self.low:
            for p, w in zip(self.params, self.masters):
                if p.grad is not None:
                    p.copy_(w)


def assert_matches(opt: LayerwiseOffloadAdamW, m: Stack, ref: CpuReference, rtol=1e-5):
    """Device params and the HOST copy of the state equal the CPU reference."""
    for p, q in zip(m.parameters(), ref.params):
        if p.dtype == torch.float32:
            torch.testing.assert_close(p.detach().cpu(), q, rtol=rtol, atol=1e-6)
        else:  # bf16: allow one rounding step; the masters below are the strict check
            torch.testing.assert_close(p.detach().cpu().float(), q.float(), rtol=1e-2, atol=1e-3)
    sd = opt.state_dict()  # host state: this is what the write-back produced
    for i, (w, q) in enumerate(zip(ref.masters, ref.params)):
        want = ref.opt.state.get(w)
        if not want:
            assert i not in sd["state"]
            continue
        got = sd["state"][i]
        assert got["step"].item() == want["step"].item()
        torch.testing.assert_close(got["exp_avg"], want["exp_avg"], rtol=rtol, atol=1e-7)
        torch.testing.assert_close(got["exp_avg_sq"], want["exp_avg_sq"], rtol=rtol, atol=1e-9)
        if ref.low:
            torch.testing.assert_close(got["master"], w, rtol=rtol, atol=1e-6)


def run_synthetic(opt, m, ref, steps, all_layers=False):
    for t in steps:
        set_active(m, t, all_layers)
        set_active(ref.m, t, all_layers)
        synth_grads(m, t)
        synth_grads(ref.m, t)
        opt.step()
        ref.step()
        m.zero_grad(set_to_none=True)
        ref.m.zero_grad(set_to_none=True)


@pytest.mark.parametrize("offload_embeddings", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_numbers_match_cpu_reference(dtype, offload_embeddings):
    m, ref = make_model(dtype), CpuReference(dtype)
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, offload_embeddings=offload_embeddings)
    assert opt.offloading
    run_synthetic(opt, m, ref, range(30))
    assert_matches(opt, m, ref)


@pytest.mark.parametrize("offload_embeddings", [True, False])
def test_device_state_at_most_two_layers_plus_embeddings(offload_embeddings):
    dtype = torch.bfloat16
    m = make_model(dtype)
    layer_b = state_bytes_of(m.layers[0], dtype)
    embed_b, head_b = state_bytes_of(m.embed, dtype), state_bytes_of(m.head, dtype)
    # Earlier tests' engines and models can sit in reference cycles; collected in the middle of
    # the loop below, they would show as a drop in device memory that this engine did not cause
    # (the first H200 run saw 15.1 MB less after step 1 than after step 0, then flat).
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, offload_embeddings=offload_embeddings)
    torch.cuda.synchronize()
    allocated = torch.cuda.memory_allocated() - base
    dev = opt.state_bytes()["device"]
    # what the engine reports is what the allocator handed out (blocks are rounded up to 512 B,
    # and a large-pool block left unsplit can carry up to 1 MiB extra)
    assert dev <= allocated <= dev + 4 * 2**20
    bound = 2 * layer_b + embed_b + head_b
    want = 2 * layer_b + embed_b + head_b  # embeddings/head: a slot each, or resident
    assert dev == want <= bound
    assert opt.state_bytes()["host"] >= N_LAYERS * layer_b
    # host state is page-locked (so copies are asynchronous), registered at its exact size
    staged = [st for st in opt._stores if st.staged]
    assert staged and all(st.home.is_pinned() for st in staged)

    staged_counts = []
    opt._before_update_hook = lambda name: staged_counts.append(opt._pipe.units_on_device())
    peaks, after = [], []
    for t in range(12):
        set_active(m, t, all_layers=t % 2 == 0)
        synth_grads(m, t)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        opt.step()
        peaks.append(torch.cuda.max_memory_allocated() - before)
        m.zero_grad(set_to_none=True)
        after.append(torch.cuda.memory_allocated())
    assert opt.max_device_state_bytes <= bound
    layers_staged = [sum(n.startswith("layer.") for n in names) for names in staged_counts]
    assert max(layers_staged) <= 2
    assert len(set(after)) == 1, f"device memory changed across steps/switches: {after}"
    # During step only update temporaries appear (upcast grads, sqrt denominators), no state.
    largest_unit = max(sum(p.numel() for p in ps) for _, ps in units_of(m)) * 4
    assert max(peaks) <= 4 * largest_unit + 2**20


@pytest.mark.parametrize("chunk_mb", [None, 0.25], ids=["whole", "chunked"])
def test_step_never_synchronizes_the_device(chunk_mb):
    """No synchronizing CUDA call inside step(): torch's sync debug mode turns any (device or
    stream synchronize, event wait on the host, a CUDA .item(), a pageable copy) into an error."""
    m, ref = make_model(), CpuReference(torch.float32)
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, chunk_mb=chunk_mb)
    for t in range(4):
        for mod in (m, ref.m):
            set_active(mod, t, all_layers=True)
            synth_grads(mod, t)  # pageable host->device copies: outside the checked region
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        ref.step()
        m.zero_grad(set_to_none=True)
        ref.m.zero_grad(set_to_none=True)
    assert_matches(opt, m, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_race1_writeback_waits_for_optimizer_writes(dtype):
    """Each update is preceded by a long kernel: a D2H copy not gated on the update's event would
    copy the pre-update moments to host, and the host state would miss this step."""
    m, ref = make_model(dtype), CpuReference(dtype)
    opt = LayerwiseOffloadAdamW(units_of(m), **HP)
    opt._before_update_hook = lambda name: torch.cuda._sleep(SLEEP_CYCLES)
    for t in range(3):
        run_synthetic(opt, m, ref, [t], all_layers=True)
        assert_matches(opt, m, ref)  # checks the host copy after every step


@pytest.mark.parametrize("overlap", ["step", "backward"])
def test_race2_staging_buffer_not_refilled_while_update_reads_it(overlap):
    """10 units through 2 layer slots with a slow compute stream: the copy stream, free to run
    ahead, must not refill a slot (prefetch of unit k+2) before unit k's update finished with it.
    Compared with the same model trained by torch AdamW on the same device."""
    m = make_model()
    twin = make_model()
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, overlap=overlap)
    if overlap == "backward":
        opt.attach_backward_hooks()
    ref = torch.optim.AdamW(twin.parameters(), **HP, foreach=True)
    opt._before_update_hook = lambda name: torch.cuda._sleep(SLEEP_CYCLES)
    for t in range(4):
        step_twins(opt, m, ref, twin, t, all_layers=t % 2 == 0)
        for p, q in zip(m.parameters(), twin.parameters()):
            assert torch.isfinite(p).all(), "read a staging slot before its fill (NaN)"
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_race3_copy_stream_waits_for_compute_before_overwriting_a_buffer():
    """A staging slot comes from the compute stream's pool and may be the block of a tensor that
    queued compute kernels still read. The first host->device fill (copy stream) must wait for
    them, or it clobbers that tensor (and the later NaN fill clobbers the state)."""
    m, ref = make_model(), CpuReference(torch.float32)
    for mod in (m, ref.m):
        set_active(mod, 0, all_layers=True)
        synth_grads(mod, 0)
    slot_floats = 2 * sum(p.numel() for p in m.layers[0].parameters())  # a layer slot, fp32 state
    torch.cuda.synchronize()
    x = torch.ones(slot_floats, device="cuda")
    x_ptr = x.data_ptr()
    torch.cuda._sleep(4 * SLEEP_CYCLES)  # compute busy ...
    y = x * 2  # ... then reads x
    del x  # the block goes back to the compute stream's pool while y's kernel is still queued
    opt = LayerwiseOffloadAdamW(units_of(m), **HP)
    if not any(s.buf.data_ptr() == x_ptr for s in opt._pipe.slots):
        pytest.skip("the allocator did not hand the freed block to a staging slot; race not provoked")
    # Gradients were set before the sleep: their pageable copies synchronize, which would let the
    # compute stream drain and hide the race. step() now queues its copies at once.
    opt.step()
    assert torch.equal(y, torch.full_like(y, 2.0)), "copy stream overwrote a buffer compute still read"
    ref.step()
    assert_matches(opt, m, ref)


def test_race3_refill_waits_for_compute_reading_a_slot():
    """A kernel queued on the compute stream that still reads a staging slot (after a long one)
    must see the slot's contents from before step(): the copy stream waits for compute first."""
    m = make_model()
    opt = LayerwiseOffloadAdamW(units_of(m), **HP)
    set_active(m, 0, all_layers=True)
    synth_grads(m, 0)
    torch.cuda.synchronize()
    slot = opt._pipe.slots[0].buf
    torch.cuda._sleep(4 * SLEEP_CYCLES)
    z = slot * 1  # reads the slot (still its NaN fill) only after the sleep
    opt.step()  # refills the slot on the copy stream
    assert torch.isnan(z).all(), "a refill overtook a compute kernel that was still to read the slot"


def test_overlap_backward_matches_step_on_cuda():
    m_s, m_b = make_model(), make_model()
    opt_s = LayerwiseOffloadAdamW(units_of(m_s), **HP)
    opt_b = LayerwiseOffloadAdamW(units_of(m_b), **HP, overlap="backward")
    opt_b.attach_backward_hooks()
    for t in range(9):
        for mod, opt in ((m_s, opt_s), (m_b, opt_b)):
            set_active(mod, t)
            real_backward(mod, t)
            opt.step()
            mod.zero_grad(set_to_none=True)
    for p, q in zip(m_s.parameters(), m_b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_resume_on_cuda_is_bit_identical():
    def run(steps, opt, m):
        for t in steps:
            set_active(m, t)
            synth_grads(m, t)
            opt.step()
            m.zero_grad(set_to_none=True)

    m = make_model(torch.bfloat16)
    opt = LayerwiseOffloadAdamW(units_of(m), **HP)
    run(range(20), opt, m)
    m1 = make_model(torch.bfloat16)
    opt1 = LayerwiseOffloadAdamW(units_of(m1), **HP)
    run(range(10), opt1, m1)
    sd, msd = opt1.state_dict(), {k: v.clone() for k, v in m1.state_dict().items()}
    m2 = make_model(torch.bfloat16, seed=7)
    m2.load_state_dict(msd)
    opt2 = LayerwiseOffloadAdamW(units_of(m2), **HP)
    opt2.load_state_dict(sd)
    run(range(10, 20), opt2, m2)
    for p, q in zip(m.parameters(), m2.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_chunked_streaming_two_chunks_on_device_and_same_numbers(dtype):
    """chunk_mb: every unit (the 4096 x 256 head too) streams through two small slots; with a slow
    compute stream the copy stream must still wait for each chunk's update (races 1 and 2)."""
    chunk_mb = 0.25
    m, ref = make_model(dtype), CpuReference(dtype)
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, chunk_mb=chunk_mb)
    assert opt.state_bytes()["device"] <= 2 * chunk_mb * 2**20
    assert len(opt._stores[-1].chunks) > 4  # the head is split
    on_device = []

    def slow(name):
        on_device.append(len(opt._pipe.units_on_device()))
        torch.cuda._sleep(SLEEP_CYCLES // 10)

    opt._before_update_hook = slow
    run_synthetic(opt, m, ref, range(6))
    assert max(on_device) <= 2
    assert_matches(opt, m, ref)


@pytest.mark.parametrize("chunk_mb", [None, 0.25, 64.0], ids=["whole", "chunked", "default64"])
def test_bf16_state_matches_torch_adamw_on_bf16_weights(chunk_mb):
    """fp32_state=False: bf16 moments, no master; the same as torch AdamW on the bf16 weights.
    64 MiB (GRASS's default) is clamped to one layer's state: two layer-sized slots on the device,
    the larger embeddings and head streamed through them in layer-sized chunks."""
    m, twin = make_model(torch.bfloat16), make_model(torch.bfloat16)
    opt = LayerwiseOffloadAdamW(units_of(m), **HP, fp32_state=False, chunk_mb=chunk_mb)
    if chunk_mb == 64.0:
        layer_state = 2 * 2 * sum(p.numel() for p in m.layers[0].parameters())  # two bf16 moments
        assert opt.state_bytes()["device"] == 2 * layer_state
    ref = torch.optim.AdamW(twin.parameters(), **HP, foreach=True)
    opt._before_update_hook = lambda name: torch.cuda._sleep(SLEEP_CYCLES // 10)
    for t in range(6):
        step_twins(opt, m, ref, twin, t)
    for p, q in zip(m.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=2e-2, atol=1e-3)  # bf16: one rounding step apart at most
    sd = opt.state_dict()
    assert all(e["exp_avg"].dtype == torch.bfloat16 and "master" not in e for e in sd["state"].values())
