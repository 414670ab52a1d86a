"""Make accuracy evaluation cheaper without changing a response: the stop at '### ', the batch size.

Greedy evaluation is most of a CPU reproduction run's time. This script generates the same items
in several passes, side by side in one process (after one untimed warm-up batch), and prints each
pass's time, its ratio to the first pass, and how many responses differ from the first pass's
(it must be 0: a change that alters a response is not a speed-up). Writes the JSON to ``--out``.

``--compare stop``: the full budget against stopping each row where the paper's protocol cuts it
(:class:`grass.eval.protocol.StopAtNextBlock`), both at ``--batch-size``.
``--compare batch``: one pass per ``--batch-sizes`` value, all with the stop.

    python scripts/benchmark_generation.py                         # base SmolLM2, 32 GSM8K items, the stop
    python scripts/benchmark_generation.py --compare batch --batch-sizes 16 64 --limit 128 \\
        --weights RUN/checkpoint/weights.pt

``--weights`` takes the trained parameters of a full-parameter run in progress (its periodic
checkpoint; a finished run keeps no checkpoint, and a LoRA checkpoint holds adapter parameters):
a trained model's responses end where the base model's ramble on, and the batch size trades
fewer, wider forward passes against rows that have stopped but still ride along.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from grass.checkpoint import copy_weights
from grass.data import load_benchmark
from grass.errors import GrassError
from grass.eval.protocol import generate
from grass.models.load import load_model
from grass.results import atomic_write_text


def passes(args) -> list[dict]:
    """The passes to time, in order: ``{"label", "batch_size", "stop"}`` each."""
    if args.compare == "stop":
        return [{"label": "full budget", "batch_size": args.batch_size, "stop": False},
                {"label": "stop at the next block", "batch_size": args.batch_size, "stop": True}]
    return [{"label": f"batch {b}", "batch_size": b, "stop": True} for b in args.batch_sizes]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", choices=("stop", "batch"), default="stop")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--weights", type=Path, help="a checkpoint's weights.pt to load over the model (a trained run)")
    ap.add_argument("--benchmark", default="gsm8k")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16, help="--compare stop: prompts per batch")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64], help="--compare batch: one pass each")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/generation.json"))
    args = ap.parse_args(argv)
    if args.weights is not None and not args.weights.is_file():
        print(f"--weights {args.weights}: no such file (give a run's checkpoint/weights.pt)", file=sys.stderr)
        return 2
    if min(args.limit, args.batch_size, args.max_new_tokens, *args.batch_sizes) < 1:
        print("--limit, --batch-size(s) and --max-new-tokens must be at least 1", file=sys.stderr)
        return 2
    if args.compare == "batch" and len(args.batch_sizes) < 2:
        print("--compare batch needs at least two --batch-sizes", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    runs = passes(args)
    try:
        model, tok = load_model(args.model)
        items = load_benchmark(args.benchmark, "eval", limit=args.limit)
        if args.weights is not None:
            copy_weights(model, torch.load(args.weights, map_location="cpu", weights_only=True),
                         f"--weights {args.weights} (a full-parameter run's checkpoint of this model)")
        model.eval()
        generate(model, tok, items[:1], batch_size=1, max_new_tokens=2, device="cpu")  # warm-up, untimed
        responses = []
        for run in runs:
            t = time.perf_counter()
            responses.append(generate(model, tok, items, batch_size=run["batch_size"],
                                      max_new_tokens=args.max_new_tokens, device="cpu", stop_at_next_block=run["stop"]))
            run["seconds"] = time.perf_counter() - t
    except GrassError as e:
        print(e, file=sys.stderr)
        return 2
    for run, resp in zip(runs, responses):
        run["speedup"] = runs[0]["seconds"] / run["seconds"]
        run["responses_differing"] = sum(a != b for a, b in zip(responses[0], resp))
    report = {"model": args.model, "weights": str(args.weights) if args.weights else None,
              "benchmark": args.benchmark, "items": len(items), "max_new_tokens": args.max_new_tokens,
              "compare": args.compare, "passes": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"{len(items)} {args.benchmark} items, {args.max_new_tokens} new tokens (one process, one thread):")
    for run in runs:
        print(f"  {run['label']:24s} {run['seconds']:8.1f} s  x{run['speedup']:.2f}  "
              f"responses differing from the first pass: {run['responses_differing']}")
    return 1 if any(run["responses_differing"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
