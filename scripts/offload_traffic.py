#!/usr/bin/env python
"""Optimizer-state traffic of GRASS's offload engine, per step, without a GPU.

    python scripts/offload_traffic.py --model smollm2-135m --chunk-mb none,16 --fp32-state true,false

The engine's CPU simulation stages every unit through CPU "device" slots with synchronous copies,
exactly the slot logic of the CUDA path, and counts the bytes it moves. This runs it on a model's
real units (random weights, bf16, gamma layers drawn as GRASS draws them, every parameter given a
gradient) and prints, per configuration: state bytes on the device and in host memory, and the
MiB moved each way at a layer switch and at the other steps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def _bools(text: str) -> list[bool]:
    return [x.strip().lower() in ("1", "true", "yes") for x in text.split(",")]


def _chunks(text: str) -> list[float | None]:
    return [None if x.strip().lower() in ("none", "null", "") else float(x) for x in text.split(",")]


def measure(model: str, gamma: int, switch_every: int, steps: int, chunk_mb: float | None, fp32_state: bool) -> dict:
    """Run ``steps`` simulated optimizer steps; return the byte accounting and per-step traffic."""
    from grass.config import load_config
    from grass.models.load import load_model
    from grass.optim.offload import LayerwiseOffloadAdamW
    from grass.registry import get_method

    cfg = load_config(None, ["method.name=grass", f"model.name={model}", f"method.n_active_layers={gamma}",
                             "log.wandb=disabled"])
    method = get_method("grass")(cfg.method, cfg)
    net = method.prepare(load_model(model, "bfloat16", init="random")[0])
    opt = LayerwiseOffloadAdamW(method.units(), lr=1e-4, chunk_mb=chunk_mb, fp32_state=fp32_state,
                                _simulate_offload=True)
    moved = []
    for t in range(steps):
        if t % switch_every == 0:
            method.switch(t)  # a GRASS draw (uniform before any MGN exists)
        for p in net.parameters():
            p.grad = torch.full_like(p, 1e-3) if p.requires_grad else None
        before = opt.transfer_bytes()
        opt.step()
        after = opt.transfer_bytes()
        moved.append({d: (after[d] - before[d]) / 2**20 for d in ("h2d", "d2h")})
    switch = [m for t, m in enumerate(moved) if t % switch_every == 0 and t > 0]
    other = [m for t, m in enumerate(moved) if t % switch_every]
    return {"state": opt.state_bytes(), "first": moved[0], "switch": switch, "other": other}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--gamma", type=int, default=2, help="active layers")
    p.add_argument("--switch-every", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--chunk-mb", default="none,16", help="comma list; none = whole layers")
    p.add_argument("--fp32-state", default="true,false", help="comma list of true/false")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{args.model}, bf16 weights, gamma {args.gamma}, switch every {args.switch_every}, {args.steps} steps")
    print(f"{'state':<6}{'chunk MiB':>10}{'device MiB':>12}{'host MiB':>10}{'first step':>14}"
          f"{'at a switch':>14}{'other steps':>14}   (MiB in/out)")
    for fp32 in _bools(args.fp32_state):
        for chunk in _chunks(args.chunk_mb):
            r = measure(args.model, args.gamma, args.switch_every, args.steps, chunk, fp32)

            def fmt(ms):
                if not ms:
                    return "-"
                return f"{max(m['h2d'] for m in ms):.0f}/{max(m['d2h'] for m in ms):.0f}"

            print(f"{'fp32' if fp32 else 'bf16':<6}{'-' if chunk is None else f'{chunk:g}':>10}"
                  f"{r['state']['device'] / 2**20:>12.1f}{r['state']['host'] / 2**20:>10.1f}"
                  f"{fmt([r['first']]):>14}{fmt(r['switch']):>14}{fmt(r['other']):>14}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
