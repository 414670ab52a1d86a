"""``grass memory``: predicted memory of a fine-tuning run, without loading weights.

    grass memory --model llama2-7b --method all --seq-len 1024 --batch 4 --precision bf16
    grass memory --model ./my-model --method grass --n-active-layers 4 --grad-ckpt --json
    grass memory --model llama2-70b --method all --fsdp 8     # per GPU of an 8-GPU FSDP run
    grass memory --model llama2-7b --method lora --lora-rank 16 --lora-targets q_proj,v_proj
    grass memory --model smollm2-135m --method all --precision fp32 --autocast   # train.precision=bf16
"""
from __future__ import annotations

import argparse
import json
import math

from grass.memory.arch import ALL_LINEAR
from grass.memory.model import (GIB, METHODS, PRECISIONS, STATE_POLICIES, Prediction, predict, predict_all,
                                resolve_policy)
from grass.optim.offload_state import DEFAULT_CHUNK_MB, DEFAULT_FP32_STATE

PCIE_GBPS = 25.0  # host-to-device bandwidth the copy time is quoted at (PCIe 4 x16 in practice)

LAYERWISE = ("lisa", "grass")
# The methods each method-specific flag plans, and its value when not given. A flag given for a method it
# does not concern is refused: silently ignoring it would print a table that did not use it.
METHOD_FLAGS: dict[str, tuple[tuple[str, ...], object]] = {
    "n_active_layers": (LAYERWISE, 2),
    "offload": (LAYERWISE, None),
    "state_policy": (LAYERWISE, None),
    "offload_chunk_mb": (LAYERWISE, DEFAULT_CHUNK_MB),
    "offload_fp32_state": (LAYERWISE, DEFAULT_FP32_STATE),
    "probe_checkpointing": (("grass",), True),
    "lora_rank": (("lora", "dora"), 8),
    "lora_targets": (("lora", "dora"), ALL_LINEAR),
}


def _chunk_mb(text: str) -> float | None:
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB or none, got '{text}'") from None


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated module names (e.g. q_proj,v_proj) or all-linear")
    return names


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("memory", help="predict weights/gradients/optimizer/activation memory of a run",
                              description="Predict the memory of fine-tuning a model with each method, from its "
                                          "config alone (no weights are loaded). Sizes in GiB.")
    p.add_argument("--model", required=True, help="preset (llama2-7b, llama2-13b, llama2-70b, tinyllama-1.1b, "
                   "gemma-2b, smollm2-135m, gemma3-270m), tiny test model, local folder / config.json, or HF id")
    p.add_argument("--method", required=True, help=f"{' | '.join(METHODS)} | all")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence (default 1024)")
    p.add_argument("--batch", type=int, default=4, help="sequences per micro-batch (default 4)")
    p.add_argument("--precision", default="bf16", choices=PRECISIONS, help="weights dtype (default bf16)")
    p.add_argument("--autocast", action="store_true",
                   help="with --precision fp32: bf16 autocast over the fp32 weights, as train.precision=bf16 "
                        "(or auto on a bf16 device) with model.dtype=float32 runs (not modelled for LoRA/DoRA "
                        "or GPT-2)")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing of every decoder block")
    p.add_argument("--n-active-layers", type=int, default=argparse.SUPPRESS, help="gamma of lisa / grass (default 2)")
    p.add_argument("--offload", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="lisa/grass: offload optimizer state to host memory (grass default on, lisa off; "
                        "--no-offload = reset)")
    p.add_argument("--state-policy", choices=STATE_POLICIES, default=argparse.SUPPRESS,
                   help="lisa/grass optimizer state across switches (overrides --offload)")
    p.add_argument("--offload-chunk-mb", type=_chunk_mb, default=argparse.SUPPRESS,
                   help=f"offload: stream optimizer state in chunks of at most this many MiB and one decoder "
                        f"layer's state (default {DEFAULT_CHUNK_MB:g}, as method.offload_chunk_mb); none: whole layers")
    p.add_argument("--offload-fp32-state", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="offload: fp32 moments + fp32 master weights; default --no-offload-fp32-state: state in "
                        "the weights' dtype (as method.offload_fp32_state)")
    p.add_argument("--probe-checkpointing", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="grass: recompute blocks in the probe's backward (default, as method.probe_checkpointing); "
                        "--no-probe-checkpointing: the probe keeps every block's activations")
    p.add_argument("--lora-rank", type=int, default=argparse.SUPPRESS, help="LoRA/DoRA rank (default 8)")
    p.add_argument("--lora-targets", type=_names, default=argparse.SUPPRESS, metavar="NAMES",
                   help="LoRA/DoRA target_modules, comma-separated decoder-block linears (e.g. q_proj,v_proj; "
                        "default all-linear)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="where training runs (cpu: what a CPU run's byte accounting reports)")
    p.add_argument("--fsdp", type=int, default=1, metavar="N",
                   help="per-rank bytes of a train.parallel=fsdp run over N processes (default 1: one process, "
                        "or DDP, which holds everything on every rank)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def method_options(args) -> dict:
    """The method-specific flags with their defaults filled in; a flag given for a method it does not plan
    (``--lora-rank`` with ``--method grass``, or a state policy with ``--method all``) raises GrassError."""
    from grass.errors import GrassError

    given = [key for key in METHOD_FLAGS if hasattr(args, key)]
    for key in given:
        methods = METHOD_FLAGS[key][0]
        if args.method == "all" and key in ("offload", "state_policy"):
            raise GrassError(f"{_flag(key)} picks one state policy, but --method all plans lisa (reset) and grass "
                             f"(offload and reset); use --method lisa or --method grass with it")
        if args.method in METHODS and args.method not in methods:
            raise GrassError(f"{_flag(key)} applies to {' and '.join(methods)}, not {args.method}: drop it or "
                             f"use --method {methods[0]}")
        if key in ("offload_chunk_mb", "offload_fp32_state") and args.method in LAYERWISE:
            policy = resolve_policy(args.method, getattr(args, "offload", None), getattr(args, "state_policy", None))
            if policy != "offload":
                raise GrassError(f"{_flag(key)} sets the offload engine, but {args.method} is planned with state "
                                 f"policy {policy}: plan it with --state-policy offload, or drop {_flag(key)}")
        if key in ("lora_rank", "lora_targets") and args.method == "all" and args.autocast:
            raise GrassError(f"{_flag(key)} has no effect: under --autocast lora and dora are not planned "
                             f"(not modelled); drop one of the two")
    return {key: getattr(args, key, default) for key, (_, default) in METHOD_FLAGS.items()}


def run(args) -> int:
    from grass.errors import GrassError

    if args.method != "all" and args.method not in METHODS:
        raise GrassError(f"unknown method '{args.method}'; valid methods: {', '.join(METHODS)}, all")
    opts = method_options(args)
    sizes = {"seq_len": args.seq_len, "batch": args.batch, "lora_rank": opts["lora_rank"], "fsdp": args.fsdp}
    for key, value in sizes.items():
        if value <= 0:
            raise GrassError(f"{_flag(key)} must be positive, got {value}")
    offload, state_policy = opts.pop("offload"), opts.pop("state_policy")
    kw = dict(precision=args.precision, seq_len=args.seq_len, batch=args.batch, grad_ckpt=args.grad_ckpt,
              device=args.device, fsdp=args.fsdp, autocast=args.autocast, **opts)
    if args.autocast and args.precision != "fp32":
        raise GrassError("--autocast plans bf16 autocast over fp32 weights: add --precision fp32 (with bf16 "
                         "weights autocast casts nothing, so plan --precision bf16 without it)")
    chunk_mb = kw["offload_chunk_mb"]
    if chunk_mb is not None and not (chunk_mb > 0 and math.isfinite(chunk_mb)):  # nan, inf, <= 0
        raise GrassError(f"--offload-chunk-mb must be a positive number or none, got {chunk_mb:g}")
    if args.method == "all":
        rows = predict_all(args.model, **kw)
    else:
        rows = [predict(args.model, args.method, offload=offload, state_policy=state_policy, **kw)]
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


def format_table(rows: list[Prediction]) -> str:
    """A fixed-width GiB table with one row per prediction and a header naming the setting."""
    r0 = rows[0]
    base = r0.params - (r0.trainable_params if r0.method in ("lora", "dora") else 0)  # params counts adapters
    precision = f"{r0.precision} weights + bf16 autocast" if r0.autocast else r0.precision
    head = (f"{r0.model}: {base / 1e9:.3f}B params (base), {precision}, seq {r0.seq_len} x batch "
            f"{r0.batch}{', grad-ckpt' if r0.grad_ckpt else ''}, device {r0.device}"
            f"{f', FSDP over {r0.fsdp} ranks: per rank' if r0.fsdp > 1 else ''}; GiB")
    cols = ("method", "trainable", "weights", "grads", "optim dev", "optim host", "activ.", "total dev")
    lines = [head, f"{cols[0]:<18}" + "".join(f"{c:>11}" for c in cols[1:])]
    for r in rows:
        label = r.label + (f" g={r.n_active_layers}" if r.n_active_layers else "")
        vals = [r.weights, r.grads, r.optimizer_device, r.optimizer_host, r.activations, r.total]
        lines.append(f"{label:<18}{_count(r.trainable_params):>11}" + "".join(f"{v / GIB:>11.2f}" for v in vals))
    notes = [f"  {r.label}: probe phase (all blocks trainable) sets the activation peak" for r in rows
             if r.details.get("activation_parts", {}).get("phase") == "probe"]
    notes += [offload_note(r) for r in rows if "offload" in r.details and r.device != "cpu"]
    if r0.autocast and len(rows) > 1 and not {"lora", "dora"} & {r.method for r in rows}:
        notes.append("  lora, dora: not planned under autocast (not modelled)")
    lines.append("grads / optimizer: peak over update steps (exact, as byte_accounting records); activations: "
                 "analytic estimate; total = weights + grads + optim dev + activations"
                 + (" + FSDP's unsharded working set (estimate)" if r0.fsdp > 1 else "") + ("\n" + "\n".join(notes)
                                                                                          if notes else ""))
    return "\n".join(lines)


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def offload_note(r: Prediction) -> str:
    """One line on an offloading row: device-resident state in decoder layers, copies per step."""
    o = r.details["offload"]
    mode = "whole layers" if o["chunk_mb"] is None else f"chunks <= {o['chunk_mb']:g} MiB"
    state = "fp32 moments + masters" if o["fp32_state"] else "state in the weights' dtype"
    moved = o["h2d_per_step"]
    line = (f"  {r.label}: {mode}, {state}; optimizer state on device = {o['device_state_in_layers']:.2f} "
            f"decoder layers' state ({o['slots']} slots); copies per update step {moved / GIB:.2f} GiB each way "
            f"({moved / (PCIE_GBPS * 1e9) * 1e3:.0f} ms per direction at {PCIE_GBPS:g} GB/s)")
    if o["switch_max"]:
        line += f", up to {o['switch_max'] / GIB:.2f} GiB each way at a layer switch"
    return line
