"""The memory model on CUDA (issue 9): activations within 15% of ``torch.cuda.max_memory_allocated``,
and the byte accounting of a real run equal to the prediction; skipped without CUDA.

Measured activations = peak allocated during one forward+backward minus what was allocated
before it (weights, optimizer state, cuBLAS workspace after a warm-up step), with every
gradient set to None first. The peak comes at the start of backward (the loss's three fp32
``[tokens, vocab]`` tensors on top of everything saved), before gradients of any size exist.
"""
from __future__ import annotations

import pytest
import torch

from grass.errors import GrassError
from grass.memory.model import GIB, predict

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

MODEL = "smollm2-135m"
# Random weights from SmolLM2's config: memory does not depend on the weights, and the GGUF file
# (94 MiB) need not be on the GPU machine.
INIT = "random"


def _prepared(method: str, dtype: str, gc: bool):
    from grass.config import load_config
    from grass.models.load import load_model
    from grass.registry import get_method

    try:
        model, _ = load_model(MODEL, dtype, init=INIT)
    except GrassError as e:
        pytest.skip(str(e))
    cfg = load_config(None, [f"method.name={method}", f"model.name={MODEL}", "log.wandb=disabled"])
    model.to("cuda")
    if gc:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    m = get_method(method)(cfg.method, cfg)
    model = m.prepare(model)
    opt = m.build_optimizer(model)
    if method in ("lisa", "grass"):
        m.on_step_start(0)
    model.train()
    return model, opt


def _batch(seq: int, batch: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 40000, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -17:] = 0  # padded, as training batches are
    return {"input_ids": ids.cuda(), "attention_mask": mask.cuda(), "labels": ids.masked_fill(mask == 0, -100).cuda()}


@pytest.mark.parametrize("dtype,precision", [("float32", "fp32"), ("bfloat16", "bf16")])
@pytest.mark.parametrize("method,gc", [("full", False), ("lora", False), ("dora", False), ("lisa", False),
                                       ("full", True), ("lisa", True)])
def test_activation_estimate_within_15pct(method, gc, dtype, precision):
    seq, batch = 1024, 2
    model, _ = _prepared(method, dtype, gc)
    data = _batch(seq, batch)
    model(**data).loss.backward()  # warm-up: cuBLAS workspace and kernels' buffers
    for p in model.parameters():
        p.grad = None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model(**data).loss.backward()
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - before
    pred = predict(MODEL, method, precision=precision, seq_len=seq, batch=batch, grad_ckpt=gc, device="cuda")
    assert abs(pred.activations / measured - 1) < 0.15, (
        f"{method} {precision} gc={gc}: predicted {pred.activations / GIB:.3f} GiB, measured {measured / GIB:.3f} GiB")


@pytest.mark.parametrize("method,policy", [("full", None), ("lora", None), ("lisa", "reset"), ("grass", "offload")])
def test_byte_accounting_matches_prediction_on_cuda(tmp_path, method, policy):
    from grass.config import load_config
    from grass.train import train

    ov = [f"model.name={MODEL}", f"model.init={INIT}", "model.dtype=bfloat16", f"method.name={method}", "train.max_steps=4",
          "train.seq_len=128", "train.batch_size=2", "train.device=cuda", "log.wandb=disabled",
          f"log.runs_dir={tmp_path}"]
    if policy:
        ov += [f"method.state_policy={policy}", "method.n_active_layers=2", "method.switch_every=2"]
    if method == "grass":
        ov += ["method.probe_steps=1"]
    try:
        r = train(load_config(None, ov), progress=False)
    except GrassError as e:
        pytest.skip(str(e))
    p = predict(MODEL, method, precision="bf16", device="cuda", n_active_layers=2,
                **({"state_policy": policy} if policy else {}))
    got = {k: round(r[f"mem/{k}_gib"] * GIB) for k in ("params", "grads", "optimizer_state_device",
                                                       "optimizer_state_host")}
    assert got == {"params": p.weights, "grads": p.grads, "optimizer_state_device": p.optimizer_device,
                   "optimizer_state_host": p.optimizer_host}
