"""Measured optimizer-state traffic of the offload engine, on a CPU, for any model that fits in RAM.

:func:`simulate_offload` builds the model's architecture with random weights, LISA's layer draws
(uniform, seeded: the traffic depends on how many layers are active and their size, not on which
ones), and :class:`grass.optim.offload.LayerwiseOffloadAdamW` in its simulated staging mode (CPU
"device" slots, synchronous copies: exactly the slot logic of the CUDA path), gives the trainable
parameters gradients (real forward/backward passes on a small random batch for
``overlap="backward"``, whose hooks need them; constant gradients otherwise) and counts the bytes
the engine moves each step.
The memory planner predicts the same quantities analytically
(``predict(...).details["offload"]``); tests/unit/memory/test_traffic.py holds the two equal, and
``scripts/offload_traffic.py`` prints both.
"""
from __future__ import annotations

import torch

from grass.optim.offload_state import DEFAULT_CHUNK_MB, DEFAULT_FP32_STATE


def simulate_offload(model: str, *, gamma: int = 2, switch_every: int = 10, steps: int = 22,
                     chunk_mb: float | None = DEFAULT_CHUNK_MB, fp32_state: bool = DEFAULT_FP32_STATE,
                     overlap: str = "step", dtype: str = "bfloat16", seq_len: int = 8) -> dict:
    """Train ``steps`` steps of layer-wise AdamW with simulated offload; count the copies.

    Args:
        model: a model name :func:`grass.models.load.load_model` builds with ``init="random"``.
        gamma, switch_every: active layers and the steps between draws (a draw at step 0).
        steps: optimizer steps.
        chunk_mb, fp32_state, overlap: the engine's settings (``method.offload_*``, ``method.overlap``).
        dtype: the weights' dtype.
        seq_len: tokens of the one-sequence batch of ``overlap="backward"``.

    Returns:
        ``{"state": {"device", "host"}`` bytes, ``"moved": [{"h2d", "d2h", "switch"}]`` bytes per
        step, ``"layer_state"``: one decoder layer's state bytes}.
    """
    from grass.config import load_config
    from grass.models.load import load_model
    from grass.optim.offload import LayerwiseOffloadAdamW
    from grass.registry import get_method

    cfg = load_config(None, ["method.name=lisa", f"model.name={model}", f"method.n_active_layers={gamma}",
                             "log.wandb=disabled"])
    method = get_method("lisa")(cfg.method, cfg)
    torch.manual_seed(0)
    net = method.prepare(load_model(model, dtype, init="random")[0])
    opt = LayerwiseOffloadAdamW(method.units(), lr=1e-5, chunk_mb=chunk_mb, fp32_state=fp32_state, overlap=overlap,
                                _simulate_offload=True)
    if overlap == "backward":
        opt.attach_backward_hooks()
    vocab = net.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (1, seq_len), generator=torch.Generator().manual_seed(0))
    moved = []
    for t in range(steps):
        if t % switch_every == 0:
            method.switch(t)
        before = opt.transfer_bytes()  # overlap=backward moves state inside backward already
        if overlap == "backward":
            net(input_ids=ids, labels=ids).loss.backward()
        else:  # which parameters have a gradient is all step() looks at: skip the model's compute
            for p in net.parameters():
                p.grad = torch.full_like(p, 1e-3) if p.requires_grad else None
        opt.step()
        net.zero_grad(set_to_none=True)
        after = opt.transfer_bytes()
        moved.append({"h2d": after["h2d"] - before["h2d"], "d2h": after["d2h"] - before["d2h"],
                      "switch": t % switch_every == 0})
    layer = max(s.nbytes() for s in opt._stores if not s.is_embedding)
    return {"state": opt.state_bytes(), "moved": moved, "layer_state": layer}


def steady_mean(moved: list[dict]) -> dict[str, float]:
    """Mean bytes per step each way over the steps that are neither the first nor a switch.

    The engine alternates its order, so a period is two steps: each run of steps between two
    switches contributes an even number of consecutive steps (the planner's figure is that mean).
    """
    runs, run = [], []
    for t, m in enumerate(moved):
        if t == 0 or m["switch"]:
            runs.append(run)
            run = []
        else:
            run.append(m)
    runs.append(run)
    steady = [m for r in runs for m in r[: len(r) // 2 * 2]]
    return {k: sum(m[k] for m in steady) / max(1, len(steady)) for k in ("h2d", "d2h")}
