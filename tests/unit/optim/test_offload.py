"""CPU tests of the layer-wise offload engine (issue 4, DESIGN section 2.6-2.7).

A tiny stack (embedding, 4 residual Linear "layers", head) trains 50 steps with a different pair
of layers every 5 steps (layers come back after being frozen, so state must be kept), a LambdaLR
schedule, global-norm clipping and 2 micro-batches; the engine must follow torch.optim.AdamW.
``_simulate_offload=True`` runs the staging-slot path (host buffers + device slots, synchronous
copies) on the CPU, so the slot logic is covered here even though the CUDA streams are not.
"""
from __future__ import annotations

import functools
import io
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grass.errors import ConfigError
from grass.optim.offload import LayerwiseOffloadAdamW

V, D, N_LAYERS, STEPS = 32, 16, 4, 50
PAIRS = [(0, 1), (2, 3), (1, 2), (3, 0), (0, 2), (1, 3)]  # every layer is frozen, then resumed
HP = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
MODES = {  # name -> extra constructor kwargs
    "inplace": {},
    "staged": {"_simulate_offload": True},
    "staged_resident_embed": {"_simulate_offload": True, "offload_embeddings": False},
    # chunks of 1200 B of state (100 bf16 / 150 fp32 elements): chunks end inside parameters
    "staged_chunked": {"_simulate_offload": True, "chunk_mb": 1200 / 2**20},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny matmuls: intra-op threads only add contention on a shared 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def lr_lambda(t: int) -> float:
    return min(1.0, (t + 1) / 5) * max(0.1, 1.0 - t / 60)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.layers = nn.ModuleList(nn.Linear(D, D) for _ in range(N_LAYERS))
        self.head = nn.Linear(D, V)

    def forward(self, ids):
        h = self.embed(ids)
        for layer in self.layers:
            h = h + torch.tanh(layer(h))
        return self.head(h)


def make_model(dtype=torch.float32, seed=0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().to(dtype)


def units_of(m: Tiny):
    return [("embed", list(m.embed.parameters())),
            *[(f"layer.{i}", list(l.parameters())) for i, l in enumerate(m.layers)],
            ("head", list(m.head.parameters()))]


def set_active(m: Tiny, t: int) -> tuple[int, int]:
    pair = PAIRS[(t // 5) % len(PAIRS)]
    for i, layer in enumerate(m.layers):
        layer.requires_grad_(i in pair)
    return pair


def forward_backward(m: Tiny, t: int, accum: int, clip: float) -> None:
    for micro in range(accum):
        g = torch.Generator().manual_seed(1000 * t + micro)
        ids = torch.randint(0, V, (2, 6), generator=g)
        tgt = torch.randint(0, V, (2, 6), generator=g)
        loss = F.cross_entropy(m(ids).float().reshape(-1, V), tgt.reshape(-1)) / accum
        loss.backward()
    if clip:
        nn.utils.clip_grad_norm_([p for p in m.parameters() if p.grad is not None], clip)


class RefAdamW:
    """torch.optim.AdamW; for bf16 on fp32 copies with upcast grads, cast back after each step."""

    def __init__(self, m: Tiny):
        self.params = list(m.parameters())
        self.low = self.params[0].dtype != torch.float32
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


def flat(m: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in m.parameters()])


def train(m, opt, sched_opt, steps, *, accum=2, clip=1.0, sched=None, check=None):
    """Run ``steps``; return (scheduler, [flat params after each step])."""
    sched = sched or torch.optim.lr_scheduler.LambdaLR(sched_opt, lr_lambda)
    out = []
    for t in steps:
        pair = set_active(m, t)
        forward_backward(m, t, accum, clip)
        before = [p.detach().clone() for p in m.parameters()]
        opt.step()
        if check:
            check(m, pair, before)
        sched.step()
        m.zero_grad(set_to_none=True)
        out.append(flat(m))
    return sched, out


@functools.lru_cache(maxsize=None)
def reference_run(dtype) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """torch.optim.AdamW trajectory (flat params per step) and final fp32 masters (bf16 only)."""
    m = make_model(dtype)
    ref = RefAdamW(m)
    _, traj = train(m, ref, ref.opt, range(STEPS))
    return traj, (torch.cat([w.flatten() for w in ref.masters]) if ref.low else None)


@functools.lru_cache(maxsize=None)
def engine_run(dtype, mode) -> tuple[list[torch.Tensor], torch.Tensor | None, list[float]]:
    """The engine's trajectory, final masters (bf16) and the lr seen at each step."""
    m = make_model(dtype)
    opt = engine(m, **MODES[mode])
    lrs = []
    _, traj = train(m, opt, opt, range(STEPS), check=lambda *_: lrs.append(opt.param_groups[0]["lr"]))
    opt.flush()  # opt.state views the host copy; the newest state may still sit in staging slots
    masters = torch.cat([opt.state[p]["master"].flatten() for p in m.parameters()]) if dtype != torch.float32 else None
    return traj, masters, lrs


def engine(m, **kw):
    return LayerwiseOffloadAdamW(units_of(m), **HP, **kw)


def assert_rel(a: torch.Tensor, b: torch.Tensor, rel=1e-6, msg=""):
    err = (a - b).abs().max().item()
    assert err <= rel * b.abs().max().item(), f"{msg}: max abs err {err} vs scale {b.abs().max().item()}"


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_matches_torch_adamw_with_switches_schedule_clip_accum(dtype, mode):
    want, want_masters = reference_run(dtype)
    got, masters, lrs = engine_run(dtype, mode)
    assert len(set(lrs)) > 10  # the schedule really moved lr through the single param group
    for t, (a, b) in enumerate(zip(got, want)):
        assert_rel(a, b, msg=f"step {t}")
    if dtype == torch.bfloat16:  # the fp32 masters too, not only their bf16 rounding
        assert_rel(masters, want_masters)


@pytest.mark.parametrize("mode", ["inplace", "staged"])
def test_new_layers_updated_frozen_layers_bit_identical(mode):
    m = make_model()
    opt = engine(m, **MODES[mode])
    seen_active = set()

    def check(m, pair, before):
        for i, layer in enumerate(m.layers):
            params = list(layer.parameters())
            idx = [k for k, p in enumerate(m.parameters()) if any(p is q for q in params)]
            if i in pair:
                seen_active.add(i)
                assert all(not torch.equal(m_p, before[k]) for m_p, k in zip(params, idx)), f"layer {i} not updated"
            else:
                assert all(torch.equal(m_p, before[k]) for m_p, k in zip(params, idx)), f"frozen layer {i} moved"
        assert not torch.equal(m.embed.weight, before[0])

    train(m, opt, opt, range(STEPS), check=check)
    assert seen_active == set(range(N_LAYERS))
    # Per-parameter step counts only count the steps where the layer was trainable (state kept).
    for i, layer in enumerate(m.layers):
        active = sum(i in PAIRS[(t // 5) % len(PAIRS)] for t in range(STEPS))
        assert opt.state[layer.weight]["step"].item() == active
    assert opt.state[m.embed.weight]["step"].item() == STEPS


@pytest.mark.parametrize("mode", ["inplace", "staged"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_resume_from_state_dict_is_bit_identical(dtype, mode):
    full, _, _ = engine_run(dtype, mode)
    m1 = make_model(dtype)
    opt1 = engine(m1, **MODES[mode])
    sched1, first = train(m1, opt1, opt1, range(25))
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": opt1.state_dict(), "sched": sched1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)

    m2 = make_model(dtype, seed=123)  # different init: everything must come from the checkpoint
    m2.load_state_dict(ckpt["model"])
    opt2 = engine(m2, **MODES[mode])
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lr_lambda)
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    _, second = train(m2, opt2, opt2, range(25, STEPS), sched=sched2)
    for t, (a, b) in enumerate(zip(first + second, full)):
        assert torch.equal(a, b), f"step {t} differs after resume"


def test_state_dict_round_trip_and_unit_mismatch():
    m = make_model(torch.bfloat16)
    opt = engine(m, _simulate_offload=True)
    train(m, opt, opt, range(7))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups", "units"}
    assert all(v.device.type == "cpu" for e in sd["state"].values() for v in e.values())
    assert "master" in sd["state"][0]
    other = engine(make_model(torch.bfloat16, seed=5), _simulate_offload=True)
    other.load_state_dict(sd)
    sd2 = other.state_dict()
    assert sd2["state"].keys() == sd["state"].keys()
    for k in sd["state"]:
        for name, v in sd["state"][k].items():
            assert torch.equal(v, sd2["state"][k][name]), (k, name)
    assert sd2["param_groups"][0]["lr"] == sd["param_groups"][0]["lr"]
    short = LayerwiseOffloadAdamW(units_of(make_model())[:-1], **HP)
    with pytest.raises(ValueError, match="units"):
        short.load_state_dict(sd)


@pytest.mark.parametrize("mode", ["inplace", "staged"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_overlap_backward_equals_overlap_step(dtype, mode):
    m_step, m_bwd = make_model(dtype), make_model(dtype)
    opt_step = engine(m_step, **MODES[mode])
    opt_bwd = engine(m_bwd, overlap="backward", **MODES[mode])
    opt_bwd.attach_backward_hooks()
    _, want = train(m_step, opt_step, opt_step, range(30), accum=1, clip=0.0)

    sched = torch.optim.lr_scheduler.LambdaLR(opt_bwd, lr_lambda)
    got = []
    for t in range(30):
        set_active(m_bwd, t)
        forward_backward(m_bwd, t, 1, 0.0)
        # every unit was updated during backward and its gradients freed
        assert all(p.grad is None for p in m_bwd.parameters())
        opt_bwd.step()
        sched.step()
        got.append(flat(m_bwd))
    for t, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), f"step {t}"


def test_overlap_backward_unit_with_unused_param_finishes_in_step():
    lin, extra = nn.Linear(3, 3), nn.Parameter(torch.ones(3))
    opt = LayerwiseOffloadAdamW([("layer.0", [lin.weight, lin.bias, extra])], lr=0.1, overlap="backward")
    opt.attach_backward_hooks()
    lin(torch.ones(2, 3)).sum().backward()
    assert lin.weight.grad is not None  # unit incomplete (extra has no grad): nothing done yet
    w = lin.weight.detach().clone()
    opt.step()
    assert not torch.equal(w, lin.weight) and torch.equal(extra, torch.ones(3))
    opt.detach_backward_hooks()
    assert opt._hooks == []


def test_config_errors():
    m = make_model()
    with pytest.raises(ConfigError, match="overlap"):
        engine(m, overlap="sideways")
    with pytest.raises(ConfigError, match="train.grad_accum=1 or method.overlap=step"):
        engine(m, overlap="backward", grad_accum=4)
    with pytest.raises(ConfigError, match="train.max_grad_norm=0"):
        engine(m, overlap="backward", max_grad_norm=1.0)
    engine(m, overlap="step", grad_accum=4, max_grad_norm=1.0)  # fine in step mode
    with pytest.raises(ConfigError, match="overlap=backward"):
        engine(m).attach_backward_hooks()


def test_duplicate_parameter_across_units_is_rejected():
    m = make_model()
    units = units_of(m)
    units[-1] = ("head", [m.embed.weight, *m.head.parameters()])  # tied weight listed twice
    with pytest.raises(ValueError, match="'embed' and in unit 'head'"):
        LayerwiseOffloadAdamW(units, **HP)


def test_single_param_group_for_schedulers_and_cpu_accounting(caplog):
    m = make_model()
    with caplog.at_level(logging.INFO, logger="grass.optim.offload"):
        opt = engine(m)
    assert "nothing is offloaded" in caplog.text
    assert not opt.offloading
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == len(list(m.parameters()))
    assert {"lr", "betas", "eps", "weight_decay"} <= set(opt.param_groups[0])
    assert opt.unit_names() == ["embed", *[f"layer.{i}" for i in range(N_LAYERS)], "head"]
    n = sum(p.numel() for p in m.parameters())
    n_params = len(list(m.parameters()))
    assert opt.state_bytes() == {"device": 2 * n * 4 + n_params * 4, "host": 0}
    with pytest.raises(NotImplementedError):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(1))]})


@pytest.mark.parametrize("offload_embeddings", [True, False])
def test_staged_accounting_two_layers_plus_embeddings(offload_embeddings):
    m = make_model(torch.bfloat16)
    opt = engine(m, _simulate_offload=True, offload_embeddings=offload_embeddings)
    assert opt.offloading

    def state_elems(mod):  # exp_avg + exp_avg_sq + fp32 master, per element
        return 3 * sum(p.numel() for p in mod.parameters())

    layer, embed, head = state_elems(m.layers[0]), state_elems(m.embed), state_elems(m.head)
    on_device = []
    opt._before_update_hook = lambda name: on_device.append(len(opt._pipe.units_on_device()))
    train(m, opt, opt, range(12))
    b = opt.state_bytes()
    n_params = len(list(m.parameters()))
    if offload_embeddings:
        # two layer slots + one slot each for embeddings and head (so they never evict a layer)
        assert b["device"] == 4 * (2 * layer + embed + head)
        assert b["host"] == 4 * (N_LAYERS * layer + embed + head) + 4 * n_params
        assert max(on_device) <= 4
    else:
        assert b["device"] == 4 * (2 * layer + embed + head)
        assert b["host"] == 4 * N_LAYERS * layer + 4 * n_params
        assert max(on_device) <= 2
    assert opt.max_device_state_bytes <= 4 * (2 * layer + embed + head)


@pytest.mark.parametrize("offload_embeddings", [True, False])
def test_staging_slots_are_a_write_back_cache(offload_embeddings):
    """State moves only when the active layers change, and only for the layers that changed."""
    m = make_model(torch.bfloat16)
    opt = engine(m, _simulate_offload=True, offload_embeddings=offload_embeddings)

    def state(mod):  # fp32 exp_avg, exp_avg_sq, master
        return 4 * 3 * sum(p.numel() for p in mod.parameters())

    layer = state(m.layers[0])
    first = state(m.embed) + state(m.head) if offload_embeddings else 0  # loaded once, kept
    seen = [opt.transfer_bytes()]
    train(m, opt, opt, range(20), check=lambda *_: seen.append(opt.transfer_bytes()))
    moved = {t: (b["h2d"] - a["h2d"], b["d2h"] - a["d2h"]) for t, (a, b) in enumerate(zip(seen, seen[1:]))}
    # PAIRS change every 5 steps: (0,1) -> (2,3) -> (1,2) -> (3,0); two layer slots.
    want = {0: (2 * layer + first, 0), 5: (2 * layer, 2 * layer), 10: (layer, layer), 15: (2 * layer, 2 * layer)}
    assert moved == {t: want.get(t, (0, 0)) for t in range(20)}
    # The host copy is stale until a flush writes the two dirty slots back.
    layer0 = m.layers[0].weight
    host_before = opt.state[layer0]["exp_avg"].clone()
    opt.flush()
    assert opt.transfer_bytes()["d2h"] == seen[-1]["d2h"] + 2 * layer + first
    assert not torch.equal(host_before, opt.state[layer0]["exp_avg"])
    opt.flush()  # nothing dirty: no copy
    assert opt.transfer_bytes()["d2h"] == seen[-1]["d2h"] + 2 * layer + first


def test_chunked_staging_holds_two_chunks_whatever_the_unit_size():
    m = make_model(torch.bfloat16)
    chunk = 1200  # bytes of state: 100 bf16 elements (exp_avg, exp_avg_sq, master)
    opt = engine(m, _simulate_offload=True, chunk_mb=chunk / 2**20)
    sizes = {s.name: len(s.chunks) for s in opt._stores}
    # every unit is larger than a chunk: the head (544 elements) alone is 6 chunks
    assert sizes["head"] == 6 and sizes["embed"] == 6 and sizes["layer.0"] == 3
    assert opt.state_bytes()["device"] == 2 * chunk
    on_device = []
    opt._before_update_hook = lambda name: on_device.append(opt._pipe.units_on_device())
    seen = [opt.transfer_bytes()]
    train(m, opt, opt, range(6), check=lambda *_: seen.append(opt.transfer_bytes()))
    assert max(len(x) for x in on_device) <= 2
    assert opt.max_device_state_bytes == 2 * chunk
    # More chunks than slots: each step streams every updated unit in (embed, 2 layers, head),
    # except the two chunks still in the slots from the step before: step() alternates the order
    # (forward, then from the head back), so the last two chunks of one step are the first two of
    # the next (the head's last two, then the embeddings' first two).
    updated = 3 * sum(p.numel() for p in [*m.embed.parameters(), *m.head.parameters()]) * 4 \
        + 2 * 3 * sum(p.numel() for p in m.layers[0].parameters()) * 4
    stores = {s.name: s for s in opt._stores}
    first2 = sum(c.nbytes() for c in stores["embed"].chunks[:2])
    last2 = sum(c.nbytes() for c in stores["head"].chunks[-2:])
    h2d = [b["h2d"] - a["h2d"] for a, b in zip(seen, seen[1:])]
    assert h2d == [updated, updated - last2, updated - first2, updated - last2, updated - first2, updated - last2]
    d2h = [b["d2h"] - a["d2h"] for a, b in zip(seen, seen[1:])]
    assert d2h[1:] == [updated - first2, updated - last2, updated - first2, updated - last2, updated - first2]
    with pytest.raises(ConfigError, match="offload_chunk_mb must be positive"):
        engine(m, chunk_mb=0)


@pytest.mark.parametrize("extra", [{}, {"_simulate_offload": True}, {"_simulate_offload": True, "chunk_mb": 600 / 2**20}],
                         ids=["inplace", "staged", "staged_chunked"])
def test_state_in_parameter_dtype_is_torch_adamw_on_bf16_weights(extra):
    """fp32_state=False: bf16 moments, no master -- torch.optim.AdamW applied to the bf16 weights."""
    m, twin = make_model(torch.bfloat16), make_model(torch.bfloat16)
    opt = engine(m, fp32_state=False, **extra)
    ref = torch.optim.AdamW(twin.parameters(), **HP, foreach=False)
    _, got = train(m, opt, opt, range(20))
    _, want = train(twin, ref, ref, range(20))
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    opt.flush()
    p = m.layers[0].weight
    assert opt.state[p]["exp_avg"].dtype == torch.bfloat16 and "master" not in opt.state[p]
    n = sum(q.numel() for q in m.parameters())
    b = opt.state_bytes()
    assert b["host" if extra else "device"] >= 2 * 2 * n  # two bf16 moments per element, a third of fp32 state
    if extra:
        assert b["host"] == 2 * 2 * n + 4 * len(list(m.parameters()))
