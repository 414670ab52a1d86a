#!/usr/bin/env python
"""Optimizer-state residency and copy traffic of GRASS's offload engine, per step, without a GPU.

    python scripts/offload_traffic.py                         # the defaults, LLaMA2-7B and SmolLM2-135M
    python scripts/offload_traffic.py --model smollm2-135m --chunk-mb 64,none --fp32-state false,true

For each model and setting it prints what the memory planner predicts (``grass memory``'s model,
any size): optimizer state on the device (and in decoder layers' state), in host memory, and the
bytes copied each way per update step between layer switches, with the time that takes at
``--gbps`` (25 GB/s: PCIe 4 x16 in practice; write-backs and loads share one copy stream, so the
two directions add up). For models that fit in RAM (``--measure auto``: under 1B parameters) it
also runs the engine's simulated staging (:mod:`grass.memory.traffic`: CPU "device" slots,
exactly the slot logic of the CUDA path) and prints the measured copies next to the prediction.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

MIB, GIB = 2**20, 2**30


def _bools(text: str) -> list[bool]:
    return [x.strip().lower() in ("1", "true", "yes") for x in text.split(",")]


def _chunks(text: str) -> list[float | None]:
    return [None if x.strip().lower() in ("none", "null", "") else float(x) for x in text.split(",")]


def main(argv=None) -> int:
    from grass.memory.model import predict
    from grass.memory.traffic import simulate_offload, steady_mean
    from grass.optim.offload_state import DEFAULT_CHUNK_MB, DEFAULT_FP32_STATE

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="llama2-7b,smollm2-135m", help="comma list of models (grass memory's names)")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"), help="weights dtype")
    p.add_argument("--gamma", type=int, default=2, help="active layers")
    p.add_argument("--chunk-mb", default=f"{DEFAULT_CHUNK_MB:g}", help="comma list; none = whole layers "
                   f"(default {DEFAULT_CHUNK_MB:g}, method.offload_chunk_mb's default)")
    p.add_argument("--fp32-state", default=str(DEFAULT_FP32_STATE).lower(), help="comma list of true/false")
    p.add_argument("--overlap", default="step", choices=("step", "backward"))
    p.add_argument("--gbps", type=float, default=25.0, help="host<->device bandwidth for the time column")
    p.add_argument("--measure", default="auto", choices=("auto", "yes", "no"),
                   help="also run the simulated engine (auto: models under 1B parameters)")
    p.add_argument("--steps", type=int, default=10, help="simulated steps (a switch every --switch-every)")
    p.add_argument("--switch-every", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    dtype = "bfloat16" if args.precision == "bf16" else "float32"
    print(f"{args.precision} weights, gamma {args.gamma}, overlap={args.overlap}; copies per update step between "
          f"switches, each way; time per direction at {args.gbps:g} GB/s (one copy stream: both directions add up)")
    print(f"{'model':<14}{'chunk MiB':>10}{'state':>6}{'device MiB':>12}{'= layers':>9}{'host GiB':>10}"
          f"{'MiB/step':>10}{'ms/dir':>8}{'switch MiB':>11}{'measured MiB/step':>19}")
    for model in args.model.split(","):
        for fp32 in _bools(args.fp32_state):
            for chunk in _chunks(args.chunk_mb):
                pr = predict(model, "grass", precision=args.precision, n_active_layers=args.gamma,
                             offload_chunk_mb=chunk, offload_fp32_state=fp32, overlap=args.overlap)
                o = pr.details["offload"]
                measured = "-"
                if args.measure == "yes" or (args.measure == "auto" and pr.params < 1e9):
                    r = simulate_offload(model, gamma=args.gamma, switch_every=args.switch_every, steps=args.steps,
                                         chunk_mb=chunk, fp32_state=fp32, overlap=args.overlap, dtype=dtype)
                    m = steady_mean(r["moved"])
                    measured = f"{m['h2d'] / MIB:.1f}/{m['d2h'] / MIB:.1f}"
                    if r["state"]["device"] != pr.optimizer_device:
                        measured += f" (device {r['state']['device'] / MIB:.1f} MiB!)"
                moved = o["h2d_per_step"]
                print(f"{model:<14}{'-' if chunk is None else f'{chunk:g}':>10}{'fp32' if fp32 else 'w':>6}"
                      f"{pr.optimizer_device / MIB:>12.1f}{o['device_state_in_layers']:>9.2f}"
                      f"{pr.optimizer_host / GIB:>10.2f}{moved / MIB:>10.1f}{moved / (args.gbps * 1e9) * 1e3:>8.1f}"
                      f"{o['switch_max'] / MIB:>11.0f}{measured:>19}", flush=True)
    print("state: fp32 = fp32 moments + fp32 masters; w = moments in the weights' dtype (the default). "
          "switch MiB: whole layers only, the most one layer switch moves each way.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
